"""The figures list and the printed table."""

from __future__ import annotations

from poller.tools.bench.results import (
    DecodeDiffResult,
    Figure,
    LatencyRow,
    MemoryResult,
    PublishResult,
    PushResult,
    Results,
)
from poller.tools.bench.sizes import (
    BYTES_PER_ENTITY_TARGET,
    DECODE_DIFF_TARGET,
    LIMIT_USE_TARGET,
    PUBLISH_TARGET,
    PUBLISH_VS_CORE_TARGET,
)

__all__ = ["figures", "fmt", "push_figures", "render_table"]


# -- the table ------------------------------------------------------------------------------------
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}"


def _ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline


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
        out.append(
            Figure(
                key=key,
                group=group,
                label=label,
                unit=unit,
                ours=ours,
                baseline=base,
                ratio=_ratio(ours, base),
                target=target,
                meets=meets,
                note=note,
            )
        )

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
        else:
            for key, label in (
                ("limit_use", "limit use"),
                ("throttled", "throttling answers"),
                ("latency_p50", "detection latency p50"),
                ("latency_p99", "detection latency p99"),
                ("missed", "changes never seen (missed)"),
                ("first_sweep", "first sweep, every entity published"),
            ):
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
        Figure(
            key="push.latency_p50",
            group=group,
            label="push → subscriber p50",
            unit="s",
            ours=push.push_p50,
            baseline=None,
            ratio=None,
            target="—",
            meets=None,
            note=none,
        ),
        Figure(
            key="push.latency_p99",
            group=group,
            label="push → subscriber p99",
            unit="s",
            ours=push.push_p99,
            baseline=None,
            ratio=None,
            target="≤ 1 s",
            meets=None if push.push_p99 is None else push.push_p99 <= 1.0,
            note=none,
        ),
        Figure(
            key="push.reconciled",
            group=group,
            label="dropped pushes reconciled by polling",
            unit="%",
            ours=share,
            baseline=None,
            ratio=None,
            target="100 %",
            meets=None if share is None else push.reconciled == push.dropped,
            note=none,
        ),
    ]


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
