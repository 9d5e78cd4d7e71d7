// Renders /status.json into the page and refreshes it every two seconds. Text only (textContent):
// nothing from the document is ever parsed as HTML.
"use strict";

const REFRESH_MS = 2000;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function clock(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  if (value < 1) return Math.round(value * 1000) + " ms";
  if (value < 120) return value.toFixed(1) + " s";
  return Math.round(value / 60) + " min";
}

function nextPoll(src) {
  if (!src.next_poll_due) return "—";
  // due already: the cycle is running (or about to)
  return src.next_poll_in_seconds < 0.05 ? "now" : "in " + seconds(src.next_poll_in_seconds);
}

function badge(word) {
  return el("span", word, "badge " + word);
}

function sourceRow(src) {
  const tr = el("tr");
  tr.dataset.sourceKey = src.key;
  const name = el("td");
  name.appendChild(el("div", src.vendor + "/" + src.account));
  if (src.scope) name.appendChild(el("div", "scope " + src.scope, "muted"));
  if (src.watch_list !== null) {
    const ids = src.watch_list.length ? src.watch_list.join(", ") : "(none)";
    name.appendChild(el("div", "watching: " + ids, "watch"));
  }
  tr.appendChild(name);
  tr.appendChild(el("td", src.apis.join(", ")));
  const health = el("td");
  health.appendChild(badge(src.health));
  tr.appendChild(health);
  tr.appendChild(el("td", clock(src.last_poll_ended)));
  tr.appendChild(el("td", seconds(src.duration_seconds), "num"));
  tr.appendChild(el("td", nextPoll(src)));
  tr.appendChild(el("td", src.limits.map((l) => l.api + " " + l.in_window + "/" + l.limit).join(", ")));
  tr.appendChild(el("td", src.consecutive_failures, "num"));
  tr.appendChild(el("td", src.degraded_since ? clock(src.degraded_since) : "—"));
  tr.appendChild(el("td", src.entities, "num"));
  tr.appendChild(el("td", src.stream_seq, "num"));
  tr.appendChild(el("td", seconds(src.commit_lag_seconds), "num"));
  const error = el("td", "", "error");
  if (src.last_error) {
    error.textContent = src.last_error;
    error.title = "at " + src.last_error_at;
  }
  tr.appendChild(error);
  return tr;
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function render(doc) {
  document.getElementById("version").textContent = doc.version;
  const summary = document.getElementById("summary");
  summary.replaceChildren(badge(doc.ready ? "ok" : "down"));
  const degraded = doc.sources.filter((s) => s.health === "degraded").length;
  const words = doc.ready ? " ready" : " not ready: " + doc.failing.join(", ");
  summary.appendChild(el("span", words + " · " + doc.sources.length + " source(s), " + degraded + " degraded"));
  const nats = doc.nats;
  const natsRows = [
    ["Server", nats.url],
    ["Connection", nats.connected ? "connected" : "disconnected"],
    ["Stream", nats.stream + (nats.stream_and_bucket ? "" : " (not set up yet)")],
    ["Messages", nats.stream_messages === null ? "—" : nats.stream_messages],
    ["Last sequence", nats.stream_last_seq === null ? "—" : nats.stream_last_seq],
    ["Checked", nats.stream_checked_seconds_ago === null ? "never" : seconds(nats.stream_checked_seconds_ago) + " ago"],
  ].map(([k, v]) => {
    const tr = el("tr");
    tr.appendChild(el("th", k));
    tr.appendChild(el("td", v, k === "Connection" && !nats.connected ? "stale" : ""));
    return tr;
  });
  replaceRows(document.querySelector("#nats tbody"), natsRows);
  document.getElementById("source-count").textContent = "(" + doc.sources.length + ")";
  replaceRows(document.querySelector("#sources tbody"), doc.sources.map(sourceRow));
  replaceRows(
    document.querySelector("#events tbody"),
    doc.recent_events.map((e) => {
      const tr = el("tr");
      tr.appendChild(el("td", clock(e.at)));
      tr.appendChild(el("td", e.vendor + "/" + e.account));
      tr.appendChild(el("td", e.type));
      tr.appendChild(el("td", e.summary));
      return tr;
    }),
  );
  document.getElementById("refreshed").textContent = "as of " + clock(doc.generated_at);
}

async function refresh() {
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (err) {
    const refreshed = document.getElementById("refreshed");
    refreshed.textContent = "cannot refresh: " + err.message;
    refreshed.className = "stale";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
