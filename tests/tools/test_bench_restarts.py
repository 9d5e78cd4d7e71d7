"""Restarts of finished jobs in the active OutboundBot scenario, piece by piece and without timing.

A restart is timed on a tracker of its own (the live changes' latency must not mix with it), the
simulator restarts a job as the vendor would (its status, its place in the status filter), and the
report gives the three restart figures with the scenario's ``max_staleness`` as the bar.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from poller.tools.bench.report import RESTART_LABELS, figures
from poller.tools.bench.results import LatencyRow, RunResult
from poller.tools.bench.scenarios import OUTBOUNDBOT_MODULES, OutboundBotActiveScenario
from poller.tools.bench.tracker import ChangeTracker, EventRouter, ParsedEvent

needs_outboundbot = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in OUTBOUNDBOT_MODULES), reason="no OutboundBot modules"
)


def _parse(data: bytes) -> ParsedEvent:
    what, entity_id, raw = data.decode().split()
    return what, entity_id, raw


async def _deliver(router: EventRouter, text: str) -> None:
    await router.on_message(SimpleNamespace(data=text.encode()))


async def test_a_restart_is_timed_on_its_own_tracker_and_never_among_the_live_changes() -> None:
    changes, restarts = ChangeTracker(), ChangeTracker()
    router = EventRouter(_parse, changes, {"done-1": restarts})
    changes.made("live-1", "Paused", at=0.0)
    restarts.made("done-1", "Executing", at=0.0)

    await _deliver(router, "appeared done-1 Succeeded")  # the first sweep counts every entity
    await _deliver(router, "changed done-1 Executing")
    await _deliver(router, "changed live-1 Paused")

    assert changes.appeared == 1 and restarts.appeared == 0
    assert len(changes.samples) == 1 and not changes.pending and not changes.early
    assert len(restarts.samples) == 1 and not restarts.pending and not restarts.early


async def test_a_restart_event_that_beats_the_simulators_answer_still_lands_on_its_tracker() -> None:
    changes, restarts = ChangeTracker(), ChangeTracker()
    router = EventRouter(_parse, changes, {"done-1": restarts})
    await _deliver(router, "changed done-1 Executing")
    restarts.made("done-1", "Executing", at=0.0)
    assert len(restarts.samples) == 1 and not restarts.pending
    assert not changes.early and not changes.samples


async def test_a_closed_tracker_keeps_its_missed_changes_missed() -> None:
    changes = ChangeTracker()
    router = EventRouter(_parse, changes)
    changes.made("live-1", "Paused", at=0.0)
    changes.close()
    await _deliver(router, "changed live-1 Paused")
    assert changes.pending and not changes.samples and changes.changes == 1


@needs_outboundbot
def test_the_scenario_restarts_succeeded_jobs_as_the_vendor_would() -> None:
    scn = OutboundBotActiveScenario(400, 100)
    sim, live = scn.build(seed=3)
    picked = scn.restartable(sim, 5, seed=3)
    assert picked == scn.restartable(sim, 5, seed=3)  # seeded: ours and the baseline restart the same
    assert len(set(picked)) == 5 and not set(picked) & set(live)
    assert all(sim.job(job_id).status == "Succeeded" for job_id in picked)
    assert sim.job(picked[0]).job_id == picked[0]

    assert scn.apply_restart(sim, picked[0]) == "Executing"
    index = sim.instances[scn.instance].by_status[scn.group]
    assert picked[0] in index["Executing"] and picked[0] not in index["Succeeded"]
    assert sim.job(picked[0]).failure_reason is None
    with pytest.raises(ValueError, match="not finished"):
        scn.apply_restart(sim, picked[0])  # an executing job cannot be restarted
    assert scn.max_staleness == scn.MAX_STALENESS


def _run(who: str, restarts: int, missed: int, seen: list[float]) -> RunResult:
    return RunResult(
        who=who,
        window_seconds=10.0,
        requests_in_window=900,
        per_second=97.0,
        limit_use=0.97,
        throttled=0,
        max_in_window=100,
        changes=50,
        samples=50,
        missed=0,
        p50=0.5,
        p99=1.0,
        mean=0.5,
        max=1.1,
        sweep_seconds=None,
        first_sweep_seconds=10.0,
        restarts=restarts,
        restarts_missed=missed,
        restart_p50=sorted(seen)[len(seen) // 2] if seen else None,
        restart_max=max(seen, default=None),
    )


def _row(ours: RunResult, baseline: RunResult) -> LatencyRow:
    return LatencyRow(
        vendor="alibaba-outboundbot",
        name=OutboundBotActiveScenario.name,
        api="ListJobsByGroup",
        label="active",
        entities=100_000,
        page_size=100,
        pages=1000,
        limit=100,
        floor_seconds=10.0,
        bar_seconds=3.0,
        ideal_p50=5.0,
        ideal_p99=9.9,
        measured=True,
        max_staleness=120.0,
        ours=ours,
        baseline=baseline,
    )


def test_the_restart_figures_hold_the_slowest_restart_to_max_staleness() -> None:
    ours, base = _run("ours", 30, 0, [0.4, 0.6, 21.0]), _run("baseline", 30, 0, [3.0, 5.0, 9.0])
    by_key = {f.key: f for f in figures([_row(ours, base)], None, None, None)}
    prefix = OutboundBotActiveScenario.name
    slowest = by_key[f"{prefix}.restart_seen_max"]
    assert (slowest.ours, slowest.baseline, slowest.meets) == (21.0, 9.0, True)
    assert slowest.target == "≤ 120 s"
    assert by_key[f"{prefix}.restart_seen_p50"].meets is None
    missed = by_key[f"{prefix}.restart_missed"]
    assert (missed.ours, missed.baseline, missed.meets) == (0, 0, True)
    # the live changes' rows are what they were: the restarts are not among their samples
    assert by_key[f"{prefix}.latency_p99"].ours == 1.0 and by_key[f"{prefix}.missed"].ours == 0

    late = _run("ours", 30, 1, [0.4, 130.0])
    by_key = {f.key: f for f in figures([_row(late, _run("baseline", 0, 0, []))], None, None, None)}
    assert by_key[f"{prefix}.restart_seen_max"].meets is False
    assert by_key[f"{prefix}.restart_seen_max"].baseline is None  # a baseline that restarted none
    assert by_key[f"{prefix}.restart_missed"].meets is False


def test_a_run_without_restarts_says_why_its_restart_figures_are_missing() -> None:
    none = _run("ours", 0, 0, [])
    by_key = {f.key: f for f in figures([_row(none, none)], None, None, None)}
    for key in RESTART_LABELS:
        figure = by_key[f"{OutboundBotActiveScenario.name}.{key}"]
        assert figure.ours is None and figure.note.startswith("not measured")
