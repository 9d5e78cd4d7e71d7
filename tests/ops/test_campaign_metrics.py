"""Campaign metrics, build info and process metrics on /metrics, against what really reached the stream."""

from __future__ import annotations

from collections import Counter

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from poller import __version__
from poller.ops.metrics import ALERTED_CALL_OUTCOMES, ALERTED_TASK_STATES
from poller.tools.natsserver import NatsServer
from schemas import CallFinished, EntityKind, TaskStatusChanged
from schemas.events import event_type
from tests.helpers import polls_done, stream_events
from tests.ops.everyvendor import every_vendor


async def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _by(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, *keys: str
) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for (sample, labels), value in samples.items():
        if sample == name and value:
            out[tuple(dict(labels)[key] for key in keys)] += int(value)
    return out


async def test_calls_tasks_and_events_per_account_match_the_stream(nats_server: NatsServer) -> None:
    async with every_vendor(nats_server) as (service, setups):
        # the demo worlds move only when told to: two steps, then two more cycles settle the stream
        for _ in range(2):
            for setup in setups.values():
                setup.evolve()
            await polls_done(service, 1)
        await polls_done(service, 2)
        assert service.http_port is not None
        samples = await _samples(service.http_port)
        events = await stream_events(nats_server.url)

        calls = Counter((e.vendor, e.account, e.outcome.value) for e in events if isinstance(e, CallFinished))
        assert calls, "the demo worlds have finished calls"
        assert _by(samples, "aicc_calls_total", "vendor", "account", "outcome") == calls
        transitions = Counter(
            (e.vendor, e.account, e.current.state.value) for e in events if isinstance(e, TaskStatusChanged)
        )
        assert transitions, "the evolved worlds changed some task's state"
        assert _by(samples, "aicc_task_transitions_total", "vendor", "account", "state") == transitions
        # the states the alert watches exist from the start at 0, so a first one is an increase
        started = {
            (dict(labels)["vendor"], dict(labels)["account"], dict(labels)["state"])
            for (name, labels), _ in samples.items()
            if name == "aicc_task_transitions_total"
        }
        accounts = {(s.source.vendor, s.source.account) for s in service.statuses.values()}
        assert {(v, a, st) for v, a in accounts for st in ALERTED_TASK_STATES} <= started
        watched_calls = {
            (dict(labels)["vendor"], dict(labels)["account"], dict(labels)["outcome"])
            for (name, labels), _ in samples.items()
            if name == "aicc_calls_total"
        }
        assert {(v, a, o) for v, a in accounts for o in ALERTED_CALL_OUTCOMES} <= watched_calls
        published = Counter((e.vendor, e.account, event_type(e)) for e in events)
        assert _by(samples, "aicc_events_total", "vendor", "account", "type") == published

        # tasks (and job groups) by the state the last cycle left them in; jobs are calls, not campaigns
        campaigns: Counter[tuple[str, ...]] = Counter()
        for status in service.statuses.values():
            for entity in status.state.entities.values():
                if entity.kind in (EntityKind.TASK.value, EntityKind.JOB_GROUP.value):
                    campaigns[(status.source.vendor, status.source.account, entity.state)] += 1
        assert campaigns
        assert _by(samples, "aicc_tasks", "vendor", "account", "state") == campaigns

        build = [labels for (name, labels), value in samples.items() if name == "aicc_build_info"]
        assert len(build) == 1 and dict(build[0])["version"] == __version__
        names = {name for name, _ in samples}
        assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
