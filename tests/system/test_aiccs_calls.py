"""AICCS calls end to end: every attempt of a running or just-finished task once, on a real nats-server."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from poller.simulators.alibaba_aiccs import BEIJING, AiccsSimulator
from poller.tools.natsserver import NatsServer
from poller.vendors.alibaba_aiccs import DETAIL_API
from schemas import CallFinished, CallOutcome
from tests.helpers import make_config, polls_done, running, stream_events
from tests.vendors.test_alibaba_vendors import AK, SECRET, aiccs_source


def _calls(events: list[object]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


async def test_every_attempt_once_late_listed_and_retried_ones_included(nats_server: NatsServer) -> None:
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        live = sim.add_task(status="RUNNING", total=4)
        sim.add_task(status="INIT", total=5)  # not started: never a call
        config = make_config(nats_server.url, [aiccs_source(sim, detail_page_size=2, calls_settle=5)])
        attempts = []
        async with running(config) as service:
            await polls_done(service, 1)
            attempts.append(sim.call(live, status_code=("200000", "用户听完语音"), duration=40))
            attempts.append(sim.call(live, status_code=("200003", "用户未接听")))
            await polls_done(service, 2)
            attempts.append(sim.call(live, status_code=("200002", "用户占线")))
            # listed late: it ended before the newest attempt published, within the settle margin
            earlier = datetime.now(BEIJING) - timedelta(seconds=2)
            attempts.append(sim.call(live, status_code=("200010", "关机"), ended=earlier))
            # every callee called: the first unanswered one is retried, a call of its own
            attempts.append(sim.call(live, status_code=("200000", "用户听完语音")))
            sim.set_task(live, status="DONE")
            await polls_done(service, 3)
        async with running(config) as service:  # restart: nothing published twice
            await polls_done(service, 3)
        events = await stream_events(nats_server.url)
        reads = sim.log.count(api=DETAIL_API)

    calls = _calls(events)
    assert Counter(c.call_id for c in calls) == Counter(f"{a.Id}.{a.RetryCurTimes}" for a in attempts)
    assert len({c.event_id for c in calls}) == len(attempts) == 5
    by_id = {c.call_id: c for c in calls}
    first = by_id[f"{attempts[0].Id}.0"]
    assert (first.outcome, first.raw_outcome, first.talk_seconds) == (
        CallOutcome.ANSWERED,
        "SUCCESS/200000",
        40,
    )
    assert first.ended_at is not None and first.ended_at.endswith("+08:00")
    assert by_id[f"{attempts[1].Id}.0"].outcome is CallOutcome.NO_ANSWER
    assert by_id[f"{attempts[3].Id}.0"].outcome is CallOutcome.POWERED_OFF
    assert attempts[4].Id == attempts[1].Id
    assert by_id[f"{attempts[4].Id}.1"].vendor_call_id == str(attempts[1].Id)
    for call in calls:
        assert call.callee_number is not None and "*" in call.callee_number
        assert call.caller_number is not None and "*" in call.caller_number
    assert reads > 0
