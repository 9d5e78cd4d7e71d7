"""The benchmark's seconds-long version: every figure is produced, and the rate limits held.

No speed target is asserted (the machine is shared; ``poller bench`` prints the targets and the
gaps). What is asserted is what must hold on any machine: each figure is a positive number next to
the baseline's, the JSON file says the same as the run, and the limiter's sliding-window guarantee,
proved from the simulator's own log of request arrivals.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
from pathlib import Path

import msgspec

from poller.simulators.base import max_in_window
from poller.tools import bench

MEASURED_ALWAYS = (
    "tencent-ccc.limit_use",
    "tencent-ccc.throttled",
    "tencent-ccc.latency_p50",
    "tencent-ccc.latency_p99",
    "tencent-ccc.first_sweep",
    "decode_diff",
    "decode_diff_first_sweep",
    "publish",
    "publish_vs_core",
    "memory_per_entity",
    "memory_per_entity_built",
    "memory_per_entity_loaded",
    "kv_bytes_per_entity",
)
OUTBOUNDBOT = ("limit_use", "throttled", "latency_p50", "latency_p99", "missed", "first_sweep")
OUTBOUNDBOT_ROWS = ("alibaba-outboundbot", "alibaba-outboundbot.active")
#: the active row only: finished jobs restarted, timed against the scenario's max_staleness
RESTARTS = ("restart_seen_max", "restart_seen_p50", "restart_missed")


def test_quick_bench_produces_every_figure_within_the_rate_limits(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    table = io.StringIO()
    outcome = bench.run_cli(["--quick", "--json", str(path)], out=table)

    results = msgspec.json.decode(path.read_bytes(), type=bench.Results)
    assert results == outcome.results
    assert results.quick
    figures = {figure.key: figure for figure in results.figures}
    for key in MEASURED_ALWAYS:
        figure = figures[key]
        assert figure.ours is not None and figure.baseline is not None, key
        if key.endswith("throttled"):
            assert figure.ours >= 0 and figure.baseline >= 0
        else:
            assert figure.ours > 0 and figure.baseline > 0, key
            assert figure.ratio is not None and figure.ratio > 0
        assert figure.label in table.getvalue()

    outboundbot_present = all(importlib.util.find_spec(m) for m in bench.OUTBOUNDBOT_MODULES)
    for prefix in OUTBOUNDBOT_ROWS:
        for name in OUTBOUNDBOT:
            figure = figures[f"{prefix}.{name}"]
            if outboundbot_present and figure.ours is not None:
                assert figure.baseline is not None
            else:
                assert figure.ours is None and figure.note.startswith("not measured")

    for row in results.latency:
        if not row.measured:
            continue
        assert row.floor_seconds == row.pages / row.limit > 0
        for run in (row.ours, row.baseline):
            assert run is not None
            assert run.samples > 0 and run.samples + run.missed == run.changes
            assert run.requests_in_window > 0

    # the push row: every call whose push was dropped still arrived, by polling
    push = results.push
    assert push is not None and push.calls == bench.QUICK.push_calls
    assert push.pushed + push.dropped == push.calls and push.dropped > 0 and push.pushed > 0
    assert push.reconciled == push.dropped
    assert push.push_p50 is not None and push.push_p99 is not None and 0 < push.push_p50 <= push.push_p99
    assert figures["push.reconciled"].ours == 100.0 and figures["push.latency_p99"].label in table.getvalue()

    assert results.memory is not None
    assert results.memory.built.entities == results.memory.loaded.entities == bench.QUICK.memory_entities
    assert results.memory.built.chunks >= 1

    # The simulators run in processes of their own (they play the vendor: the poller's busy event
    # loop cannot delay their clock), so their arrival logs are the sliding-window proof: no second
    # of any run of ours saw more requests than the limit, and no request of ours was throttled.
    ours = {label: log for label, log in outcome.arrivals.items() if label.endswith(" ours")}
    assert "tencent-ccc ours" in ours
    for label, (limit, arrivals) in ours.items():
        assert len(arrivals) > 0 and limit > 0, label
        assert max_in_window(arrivals) <= limit, label
    for row in results.latency:
        if row.measured and row.ours is not None:
            assert row.ours.throttled == 0, row.label
            assert row.ours.max_in_window <= row.limit, row.label

    # the scenario where only 5% of the jobs can change is read by targeted reads plus a relist: the
    # same guarantee holds on both APIs it uses, and every change made among the live jobs was seen
    if outboundbot_present:
        (active,) = [row for row in results.latency if row.name == "alibaba-outboundbot.active"]
        assert active.measured and active.ours is not None
        assert active.ours.changes > 0 and active.ours.missed == 0
        assert "alibaba-outboundbot.active ours" in ours
        assert active.floor_seconds == active.pages / active.limit
        # finished jobs restarted meanwhile are timed apart: each poller saw every one, within the
        # scenario's max_staleness, and none of them is counted among the live changes above
        assert active.max_staleness == bench.SCENARIOS[active.name].max_staleness
        for run in (active.ours, active.baseline):
            assert run is not None
            assert run.restarts == bench.QUICK.restarts and run.restarts_missed == 0
            assert run.restart_max is not None and 0 < run.restart_max <= active.max_staleness
        slowest = figures["alibaba-outboundbot.active.restart_seen_max"]
        assert slowest.meets and slowest.ours == active.ours.restart_max
        assert slowest.baseline == active.baseline.restart_max
        assert figures["alibaba-outboundbot.active.restart_missed"].ours == 0
        assert figures["alibaba-outboundbot.active.restart_seen_p50"].label in table.getvalue()
    for name in RESTARTS:
        figure = figures[f"alibaba-outboundbot.active.{name}"]
        assert figure.ours is not None or figure.note.startswith("not measured"), name


def test_the_help_names_nothing_a_user_does_not_have() -> None:
    """The bench's help and its modules' docs cite only what ships in the repository."""
    import pkgutil

    texts = [bench.build_parser().format_help()]
    for info in pkgutil.iter_modules(bench.__path__, "poller.tools.bench."):
        if info.name.endswith("__main__"):
            continue  # running it is the command itself
        module = importlib.import_module(info.name)
        texts.append(module.__doc__ or "")
    for text in texts:
        assert "DESIGN" not in text and "shared/" not in text and "vendor-notes" not in text, text[:200]
