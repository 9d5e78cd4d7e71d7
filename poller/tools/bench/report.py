"""The figures list and the printed table."""

from __future__ import annotations

import statistics

from poller.config import CoordinationConfig
from poller.tools.bench.cluster import PROBE_EVERY
from poller.tools.bench.results import (
    ClusterResult,
    DecodeDiffResult,
    Figure,
    LatencyRow,
    MemoryResult,
    PublishResult,
    PushResult,
    Results,
    RunResult,
)
from poller.tools.bench.sizes import (
    BYTES_PER_ENTITY_TARGET,
    DECODE_DIFF_TARGET,
    LIMIT_USE_TARGET,
    PUBLISH_TARGET,
    PUBLISH_VS_CORE_TARGET,
    R3_PUBLISH_TARGET,
)

__all__ = ["RESTART_LABELS", "cluster_figures", "figures", "fmt", "push_figures", "render_table"]


# -- the table ------------------------------------------------------------------------------------
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}"


def _ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline


def _figure(
    key: str,
    group: str,
    label: str,
    unit: str,
    ours: float | None,
    baseline: float | None,
    target: str,
    meets: bool | None,
    note: str = "",
) -> Figure:
    """One line of the table, its ratio derived from ours and the baseline."""
    return Figure(
        key=key,
        group=group,
        label=label,
        unit=unit,
        ours=ours,
        baseline=baseline,
        ratio=_ratio(ours, baseline),
        target=target,
        meets=meets,
        note=note,
    )


#: the restart figures' key suffixes and labels (a row that follows what can change)
RESTART_LABELS = {
    "restart_seen_max": "finished job restarted → seen, max",
    "restart_seen_p50": "finished job restarted → seen, p50",
    "restart_missed": "restarts never seen",
}


def _restart_figures(
    name: str, group: str, max_staleness: float, ours: RunResult, base: RunResult
) -> list[Figure]:
    """Restarts of finished entities, timed apart from the live changes: the relist's bound."""
    labels = RESTART_LABELS
    if not ours.restarts:
        note = "not measured: no finished job was restarted in this run"
        return [
            _figure(f"{name}.{key}", group, label, "", None, None, "", None, note)
            for key, label in labels.items()
        ]

    def of(run: RunResult, value: float | None) -> float | None:
        return value if run.restarts else None

    return [
        _figure(
            f"{name}.restart_seen_max",
            group,
            labels["restart_seen_max"],
            "s",
            ours.restart_max,
            of(base, base.restart_max),
            f"≤ {max_staleness:g} s",
            ours.restart_max is not None and ours.restarts_missed == 0 and ours.restart_max <= max_staleness,
            note="none seen",
        ),
        _figure(
            f"{name}.restart_seen_p50",
            group,
            labels["restart_seen_p50"],
            "s",
            ours.restart_p50,
            of(base, base.restart_p50),
            "(no bar)",
            None,
            note="none seen",
        ),
        _figure(
            f"{name}.restart_missed",
            group,
            f"{labels['restart_missed']} (of {ours.restarts})",
            "n",
            ours.restarts_missed,
            of(base, base.restarts_missed),
            "0",
            ours.restarts_missed == 0,
        ),
    ]


def figures(
    latency: list[LatencyRow],
    decode: DecodeDiffResult | None,
    publish: PublishResult | None,
    memory: MemoryResult | None,
) -> list[Figure]:
    out: list[Figure] = []

    def add(
        key: str,
        group: str,
        label: str,
        unit: str,
        ours: float | None,
        base: float | None,
        target: str,
        meets: bool | None,
        note: str = "",
    ) -> None:
        out.append(_figure(key, group, label, unit, ours, base, target, meets, note))

    for row in latency:
        group = f"{row.label}, {row.entities:,} entities, {row.pages} pages"
        if row.measured and row.ours is not None and row.baseline is not None:
            group += f" at {row.limit} req/s (floor {row.floor_seconds:.2f} s)"
            o, b = row.ours, row.baseline
            add(
                f"{row.name}.limit_use",
                group,
                f"limit use (req/s ÷ {row.limit})",
                "%",
                100 * o.limit_use,
                100 * b.limit_use,
                f"≥ {LIMIT_USE_TARGET:.0%}",
                o.limit_use >= LIMIT_USE_TARGET,
            )
            add(
                f"{row.name}.throttled",
                group,
                "throttling answers",
                "n",
                o.throttled,
                b.throttled,
                "0",
                o.throttled == 0,
            )
            bar = f"≤ {row.bar_seconds:.2f} s"
            add(
                f"{row.name}.latency_p50",
                group,
                "detection latency p50",
                "s",
                o.p50,
                b.p50,
                bar,
                o.p50 is not None and o.p50 <= row.bar_seconds,
            )
            add(
                f"{row.name}.latency_p99",
                group,
                "detection latency p99",
                "s",
                o.p99,
                b.p99,
                bar,
                o.p99 is not None and o.p99 <= row.bar_seconds,
            )
            add(
                f"{row.name}.missed",
                group,
                "changes never seen (missed)",
                "n",
                o.missed,
                b.missed,
                "0",
                o.missed == 0,
            )
            add(
                f"{row.name}.first_sweep",
                group,
                "first sweep, every entity published",
                "s",
                o.first_sweep_seconds,
                b.first_sweep_seconds,
                "(no bar)",
                None,
            )
            if row.max_staleness is not None:
                out.extend(_restart_figures(row.name, group, row.max_staleness, o, b))
        else:
            labels = [
                ("limit_use", "limit use"),
                ("throttled", "throttling answers"),
                ("latency_p50", "detection latency p50"),
                ("latency_p99", "detection latency p99"),
                ("missed", "changes never seen (missed)"),
                ("first_sweep", "first sweep, every entity published"),
            ]
            if row.max_staleness is not None:
                labels += list(RESTART_LABELS.items())
            for key, label in labels:
                add(f"{row.name}.{key}", group, label, "", None, None, "", None, row.note)
    if decode is not None:
        group = f"CPU, one core ({decode.entities:,} Tencent tasks, pages of {decode.page_size})"
        add(
            "decode_diff",
            group,
            f"decode+diff, steady sweep ({decode.changed_fraction:.0%} changed)",
            "/s",
            decode.ours_steady.per_second,
            decode.baseline_steady.per_second,
            f"≥ {DECODE_DIFF_TARGET:,.0f}/s",
            decode.ours_steady.per_second >= DECODE_DIFF_TARGET,
        )
        add(
            "decode_diff_first_sweep",
            group,
            "decode+diff, first sweep (all appear)",
            "/s",
            decode.ours_first_sweep.per_second,
            decode.baseline_first_sweep.per_second,
            "(no bar)",
            None,
        )
    if publish is not None:
        add(
            "publish",
            "JetStream, local nats-server, file storage",
            "events published and acked",
            "/s",
            publish.ours.per_second,
            publish.baseline.per_second,
            f"≥ {PUBLISH_TARGET:,.0f}/s",
            publish.ours.per_second >= PUBLISH_TARGET,
        )
        if publish.core is not None:
            core = publish.core.per_second
            add(
                "publish_vs_core",
                "JetStream, local nats-server, file storage",
                "ours ÷ core NATS publish (its ceiling)",
                "/s",
                publish.ours.per_second,
                core,
                f"≥ {PUBLISH_VS_CORE_TARGET:.1f}×",
                core > 0 and publish.ours.per_second / core >= PUBLISH_VS_CORE_TARGET,
            )
    if memory is not None:
        group = f"Memory, {memory.entities:,} tracked entities (RSS delta, fresh subprocess)"
        base = memory.baseline.bytes_per_entity
        target = f"≤ {BYTES_PER_ENTITY_TARGET:.0f} B"
        built, loaded = memory.built.bytes_per_entity, memory.loaded.bytes_per_entity
        add(
            "memory_per_entity",
            group,
            "per entity, worst of built / loaded",
            "B",
            max(built, loaded),
            base,
            target,
            max(built, loaded) <= BYTES_PER_ENTITY_TARGET,
        )
        add(
            "memory_per_entity_built",
            group,
            "per entity, map built by the differ",
            "B",
            built,
            base,
            target,
            built <= BYTES_PER_ENTITY_TARGET,
        )
        add(
            "memory_per_entity_loaded",
            group,
            "per entity, map loaded from KV",
            "B",
            loaded,
            base,
            target,
            loaded <= BYTES_PER_ENTITY_TARGET,
        )
        add(
            "kv_bytes_per_entity",
            group,
            "KV encoding per entity (baseline: JSON)",
            "B",
            memory.built.encoded_bytes / memory.built.entities,
            memory.baseline.encoded_bytes / memory.baseline.entities,
            "(no bar)",
            None,
        )
    return out


def push_figures(push: PushResult | None) -> list[Figure]:
    """The push row: ours only (a poller without push has no such path to compare with)."""
    if push is None:
        return []
    group = (
        f"tencent-ccc push, {push.calls} calls, {push.drop_fraction:.0%} of pushes dropped, "
        f"polled every {push.poll_interval:g} s"
    )
    share = 100 * push.reconciled / push.dropped if push.dropped else None
    none = "no baseline: push only"
    return [
        _figure(
            "push.latency_p50",
            group,
            "push → subscriber p50",
            "s",
            push.push_p50,
            None,
            "—",
            None,
            none,
        ),
        _figure(
            "push.latency_p99",
            group,
            "push → subscriber p99",
            "s",
            push.push_p99,
            None,
            "≤ 1 s",
            None if push.push_p99 is None else push.push_p99 <= 1.0,
            none,
        ),
        _figure(
            "push.reconciled",
            group,
            "dropped pushes reconciled by polling",
            "%",
            share,
            None,
            "100 %",
            None if share is None else push.reconciled == push.dropped,
            none,
        ),
    ]


def cluster_figures(cluster: ClusterResult | None) -> list[Figure]:
    """The cluster row: R3 against one server, failover, and replicas seen from the vendor's side."""
    if cluster is None:
        return []
    out: list[Figure] = []

    def add(
        key: str,
        group: str,
        label: str,
        unit: str,
        ours: float | None,
        target: str,
        meets: bool | None,
        baseline: float | None = None,
        note: str = "",
    ) -> None:
        out.append(_figure(f"cluster.{key}", group, label, unit, ours, baseline, target, meets, note))

    pub = cluster.publish
    group = (
        f"JetStream cluster, {cluster.servers} servers, R3 file stream, {pub.events:,} events "
        "(baseline: one server, R1)"
    )
    single = pub.single.per_second
    bar = f"≥ {R3_PUBLISH_TARGET:,.0f}/s"
    add(
        "r3_publish",
        group,
        "events acked, client on a follower",
        "/s",
        pub.r3_follower.per_second,
        bar,
        pub.r3_follower.per_second >= R3_PUBLISH_TARGET,
        single,
    )
    add(
        "r3_publish_leader",
        group,
        "events acked, client on the leader",
        "/s",
        pub.r3_leader.per_second,
        bar,
        pub.r3_leader.per_second >= R3_PUBLISH_TARGET,
        single,
    )
    ratio = 100 * pub.r3_follower.per_second / single if single else None
    add("r3_vs_single", group, "R3 (follower) ÷ one server", "%", ratio, "(no bar)", None)

    fo = cluster.failover
    ttl = CoordinationConfig().lease_ttl
    group = (
        f"stream leader SIGKILLed {len(fo.kills)}×, Publisher at {fo.rate:g} events/s "
        f"(ack timeout {fo.ack_timeout:g} s; baseline: a probe publish every {PROBE_EVERY * 1000:.0f} ms)"
    )
    took = [k.seconds for k in fo.kills if k.seconds is not None]
    probes = [k.probe_seconds for k in fo.kills if k.probe_seconds is not None]
    recovered = len(took) == len(fo.kills)
    ttl_bar = f"≤ {ttl:g} s (lease TTL)"
    p50 = statistics.median(took) if recovered and took else None
    worst = max(took) if recovered and took else None
    best = min(took) if recovered and took else None
    add(
        "failover_p50",
        group,
        "kill → a new publish acked, p50",
        "s",
        p50,
        ttl_bar,
        p50 is not None and p50 <= ttl,
        statistics.median(probes) if probes else None,
        note="not acked again",
    )
    add(
        "failover_max",
        group,
        "kill → a new publish acked, max",
        "s",
        worst,
        ttl_bar,
        worst is not None and worst <= ttl,
        max(probes) if probes else None,
        note="not acked again",
    )
    add(
        "failover_min",
        group,
        "kill → a new publish acked, min",
        "s",
        best,
        "(no bar)",
        None,
        min(probes) if probes else None,
        note="not acked again",
    )
    add("lost", group, f"events lost (of {fo.published:,} acked)", "n", fo.lost, "0", fo.lost == 0)
    add(
        "doubled",
        group,
        "events stored twice (Nats-Msg-Id)",
        "n",
        fo.doubled + fo.unexpected,
        "0",
        fo.doubled + fo.unexpected == 0,
    )
    add(
        "duplicate_acks",
        group,
        "retried publishes acked as duplicates",
        "n",
        fo.duplicate_acks,
        "(no bar)",
        None,
    )
    share = 100 * fo.resent_duplicates / fo.resent if fo.resent else None
    add(
        "dedup_after_failover",
        group,
        f"{fo.resent} acked before a kill, re-sent: duplicates",
        "%",
        share,
        "100 %",
        share is not None and fo.resent_duplicates == fo.resent,
    )

    rep = cluster.replicas
    group = (
        f"{len(rep.replicas)} poller processes, {sum(len(s.accounts) for s in rep.replicas)} accounts back "
        f"to back at {rep.limit} req/s per credential, lease TTL {rep.lease_ttl:g} s"
    )
    per_replica = statistics.fmean(s.per_second for s in rep.replicas) if rep.replicas else None
    add("requests_per_replica", group, "requests/s per replica (mean)", "/s", per_replica, "(no bar)", None)
    add("requests_fleet", group, "requests/s, the fleet", "/s", rep.fleet_per_second, "(no bar)", None)
    cpu = [(sh.cpu_seconds, sh.requests) for sh in rep.replicas if sh.cpu_seconds is not None]
    if cpu and rep.window_seconds > 0:
        busiest = max(c for c, _ in cpu)
        add(
            "cpu_per_replica",
            group,
            "CPU of one core, the busiest replica",
            "%",
            100 * busiest / rep.window_seconds,
            "(no bar)",
            None,
        )
        spent, requests = sum(c for c, _ in cpu), sum(n for _, n in cpu)
        add(
            "cpu_per_request",
            group,
            "CPU per request, everything included",
            "ms",
            1000 * spent / requests if requests else None,
            "(no bar)",
            None,
            note="no requests",
        )
    add(
        "shared_accounts",
        group,
        "accounts polled by two replicas at once",
        "n",
        rep.shared_accounts,
        "0",
        rep.shared_accounts == 0,
    )
    add(
        "off_split",
        group,
        "accounts not where rendezvous hashing puts them",
        "n",
        rep.off_split,
        "0",
        rep.off_split == 0,
    )
    add(
        "max_in_window",
        group,
        "most requests of one credential in a second",
        "n",
        rep.max_in_window,
        f"≤ {rep.limit}",
        rep.max_in_window <= rep.limit,
    )
    add("throttled", group, "throttling answers", "n", rep.throttled, "0", rep.throttled == 0)
    add(
        "takeover_seconds",
        group,
        "replica SIGKILLed → all its accounts polled again",
        "s",
        rep.takeover_seconds,
        f"≤ {rep.takeover_bound:.1f} s (TTL + refresh + hand-over)",
        rep.takeover_seconds is not None and rep.takeover_seconds <= rep.takeover_bound,
        note="not taken over",
    )
    add("takeover_lost", group, f"task changes lost (of {rep.changes})", "n", rep.lost, "0", rep.lost == 0)
    add(
        "takeover_doubled",
        group,
        "task changes or appearances doubled",
        "n",
        rep.doubled,
        "0",
        rep.doubled == 0,
    )
    return out


def render_table(results: Results) -> str:
    lines: list[str] = []
    widths = (46, 13, 13, 9, 14)
    header = ("figure", "ours", "baseline", "ours/base", "target")
    lines.append(" ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " ok?")
    lines.append("-" * (sum(widths) + len(widths) + 4))
    group = None
    for fig in results.figures:
        if fig.group != group:
            group = fig.group
            lines.append(group)
        if fig.ours is None:
            lines.append(f"  {fig.label.ljust(widths[0] - 2)} {fig.note}")
            continue
        ratio = "—" if fig.ratio is None else f"{fig.ratio:.2f}×"
        status = {True: "ok", False: "GAP", None: ""}[fig.meets]
        cells = (f"  {fig.label}", fmt(fig.ours, fig.unit), fmt(fig.baseline, fig.unit), ratio, fig.target)
        lines.append(" ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " " + status)
    m = results.machine
    lines.append("")
    lines.append(
        f"{m.cpus} CPUs, Python {m.python}; load average before {m.load_before}, after {m.load_after}; "
        f"{results.seconds:.0f} s"
    )
    return "\n".join(lines)
