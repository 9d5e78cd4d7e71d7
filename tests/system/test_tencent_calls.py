"""Tencent CCC calls end to end: every auto-callout call once, on a real nats-server."""

from __future__ import annotations

from collections import Counter

from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from poller.vendors.tencent_ccc import CDR_API, TASK_API
from schemas import CallFinished, CallOutcome
from tests.helpers import make_config, polls_done, running, stream_events
from tests.system.test_tencent_e2e import tencent_source

APP = 1400000042


def _calls(events: list[object]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


async def test_every_call_once_with_outcome_times_and_masked_numbers(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={"AKIDsimulatedE2E": "e2e-secret-key-never-logged"}) as sim:
        running_task = sim.add_task(APP, state=1, callees=4)
        other = sim.add_task(APP, state=1, callees=2)
        config = make_config(nats_server.url, [tencent_source(sim, [APP], cdr_settle=600)])
        placed = [
            sim.place_call(APP, running_task, end_status=(1, "ok"), talk=42, ring=7),
            sim.place_call(APP, running_task, end_status=(202, "notAnswer"), ring=30),
            sim.place_call(APP, other, end_status=(207, "outOfCredit")),
        ]
        late = sim.place_call(APP, other, end_status=(206, "busy"), listed=False)
        sim.manual_call(APP)  # no task owns it: never a call-finished
        async with running(config) as service:
            await polls_done(service, 2)
            sim.list_cdr(APP, late)  # listed after the poller read the window: found next cycle
            sim.set_state(APP, other, 2)  # the task ends; its late record still counts
            await polls_done(service, 3)
            details_before_quiet = sim.log.count(api=TASK_API)
            await polls_done(service, 3)
            # every session known, the manual call remembered: no task detail is read again
            assert sim.log.count(api=TASK_API) == details_before_quiet
        async with running(config) as service:  # a restart re-reads the window: no copy
            await polls_done(service, 3)
        events = await stream_events(nats_server.url)

    calls = _calls(events)
    by_id = {c.call_id: c for c in calls}
    assert Counter(c.call_id for c in calls) == Counter(c.SessionId for c in [*placed, late])
    answered = by_id[placed[0].SessionId]
    assert (answered.outcome, answered.raw_outcome, answered.failure_reason) == (
        CallOutcome.ANSWERED,
        "1",
        None,
    )
    assert (answered.talk_seconds, answered.ring_seconds, answered.duration_seconds) == (42, 7, 42)
    assert answered.task_id == str(running_task) and answered.vendor_call_id == placed[0].SessionId
    assert answered.ended_at is not None and answered.started_at is not None
    assert answered.learned_by == "poll"
    assert by_id[placed[1].SessionId].outcome is CallOutcome.NO_ANSWER
    assert by_id[placed[1].SessionId].talk_seconds == 0
    assert by_id[placed[2].SessionId].outcome is CallOutcome.SUSPENDED_LINE
    assert by_id[placed[2].SessionId].failure_reason == "outOfCredit"
    assert by_id[late.SessionId].outcome is CallOutcome.BUSY and by_id[late.SessionId].task_id == str(other)
    for call in calls:  # numbers leave the process masked
        assert call.callee_number is not None and "*" in call.callee_number
        assert call.caller_number is not None and "*" in call.caller_number
        assert call.callee_number not in {c.Callee for c in [*placed, late]}
    assert sim.log.count(api=CDR_API) > 0


async def test_cursor_moves_on_and_old_calls_are_not_republished(nats_server: NatsServer) -> None:
    """With no settle margin the cursor follows now: each call is published once and never read as new."""
    async with TencentCccSimulator(credentials={"AKIDsimulatedE2E": "e2e-secret-key-never-logged"}) as sim:
        task = sim.add_task(APP, state=1, callees=50)
        config = make_config(nats_server.url, [tencent_source(sim, [APP], cdr_settle=0)])
        async with running(config) as service:
            placed = []
            for _ in range(5):
                placed.append(sim.place_call(APP, task))
                await polls_done(service, 2)
        events = await stream_events(nats_server.url)
    assert Counter(c.call_id for c in _calls(events)) == Counter(c.SessionId for c in placed)
