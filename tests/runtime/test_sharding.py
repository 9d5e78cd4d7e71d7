"""Scale-out: replicas sharded by account publish every change exactly once between them.

Two ``Service`` instances with one configuration and ``[shard] index = 0/1, count = 2`` share one
real nats-server and one Tencent simulator holding several accounts, each with its own credential.
Each account is polled (and its events published) by exactly one replica; a replica that is stopped
and restarted picks up the changes made while it was down.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poller.config import ShardConfig, parse_config, shard_from_env
from poller.ops.metrics import Metrics
from poller.runtime.sharding import owns, shard_of
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import Event, TaskAppeared, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events

VENDOR = "tencent-ccc"
#: chosen so that two shards own three accounts each (checked below, not assumed)
ACCOUNTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")
FIRST_APP = 1400000300


def app_of(account: str) -> int:
    return FIRST_APP + ACCOUNTS.index(account)


def account_source(sim: TencentCccSimulator, account: str) -> dict[str, Any]:
    return {
        "vendor": VENDOR,
        "account": account,
        "secret_id": f"AKIDshard{account}",
        "secret_key": f"shard-key-{account}",
        "sdk_app_ids": [app_of(account)],
        "endpoint": sim.url,
        "poll_interval": 0.1,
        "page_size": 50,
        "retries": 1,
        "failure_backoff": 0.2,
    }


def polled_accounts(metrics: Metrics) -> dict[str, int]:
    """Poll cycles per account, as this replica's own registry counted them."""
    polled: dict[str, int] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        if family.name != "aicc_poll_cycles":
            continue
        for sample in family.samples:
            if sample.name == "aicc_poll_cycles_total":
                account = sample.labels["account"]
                polled[account] = polled.get(account, 0) + int(sample.value)
    return polled


def published_count(metrics: Metrics) -> int:
    total = 0
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        if family.name == "aicc_events":
            total += sum(int(s.value) for s in family.samples if s.name == "aicc_events_total")
    return total


def change_key(event: Event) -> tuple[str, str, str, str]:
    assert isinstance(event, TaskAppeared | TaskStatusChanged), f"unexpected {type(event).__name__}"
    return (event.account, event.entity_id, type(event).__name__, event.current.raw)


def test_every_account_has_exactly_one_owner_for_any_replica_count() -> None:
    names = [f"account-{i}" for i in range(500)]
    for count in (1, 2, 3, 5, 8):
        for name in names:
            owners = [i for i in range(count) if owns(VENDOR, name, i, count)]
            assert owners == [shard_of(VENDOR, name, count)]
        if count > 1:
            loads = Counter(shard_of(VENDOR, name, count) for name in names)
            # a stable hash spreads accounts: no replica gets more than twice its fair share
            assert len(loads) == count and max(loads.values()) < 2 * len(names) / count


def test_shard_from_the_environment_overrides_the_file() -> None:
    """What the StatefulSet sets (pod index + replica count) wins over ``[shard]`` in the ConfigMap."""
    data: dict[str, Any] = {"shard": {"index": 0, "count": 1}}
    assert shard_from_env({}) is None
    for env in ({"POLLER_SHARD_INDEX": "2", "POLLER_SHARD_COUNT": "3"}, {"POLLER_SHARD": "2/3"}):
        assert parse_config(data, env=env).shard == ShardConfig(index=2, count=3)
    assert parse_config(data, env={}).shard == ShardConfig(index=0, count=1)


async def test_two_replicas_publish_each_change_once_and_catch_up_after_restart(
    nats_server: NatsServer,
) -> None:
    owner = {account: shard_of(VENDOR, account, 2) for account in ACCOUNTS}
    assert sorted(Counter(owner.values()).values()) == [3, 3], "test accounts must split 3/3"
    mine = {index: {a for a in ACCOUNTS if owner[a] == index} for index in (0, 1)}

    secrets = {f"AKIDshard{a}": f"shard-key-{a}" for a in ACCOUNTS}
    sim = TencentCccSimulator(credentials=secrets, seed=3)
    async with sim:
        tasks = {a: [sim.add_task(app_of(a), state=0) for _ in range(3)] for a in ACCOUNTS}
        sources = [account_source(sim, a) for a in ACCOUNTS]
        configs = [make_config(nats_server.url, sources, shard={"index": i, "count": 2}) for i in (0, 1)]
        metrics = [Metrics(), Metrics(), Metrics()]  # replica 0, replica 1, replica 1 restarted
        expected: list[tuple[str, str, str, str]] = [
            (a, str(t), "TaskAppeared", "0") for a in ACCOUNTS for t in tasks[a]
        ]

        def change(account: str, task: int, state: int) -> None:
            sim.set_state(app_of(account), task, state)
            expected.append((account, str(task), "TaskStatusChanged", str(state)))

        async with running(configs[0], metrics=metrics[0]) as first:
            async with running(configs[1], metrics=metrics[1]) as second:
                await polls_done(first, 1)
                await polls_done(second, 1)
                for index, service in enumerate((first, second)):
                    assert {s.source.account for s in service.statuses.values()} == mine[index]
                for account in ACCOUNTS:
                    change(account, tasks[account][0], 1)
                await polls_done(first, 2)
                await polls_done(second, 2)

            # replica 1 is down: the world moves on for every account
            for account in ACCOUNTS:
                change(account, tasks[account][0], 5)
            late = sorted(mine[1])[0]
            added = sim.add_task(app_of(late), state=1)
            expected.append((late, str(added), "TaskAppeared", "1"))
            await polls_done(first, 2)
            seen = {change_key(e) for e in await stream_events(nats_server.url)}
            for account in ACCOUNTS:
                down_change = (account, str(tasks[account][0]), "TaskStatusChanged", "5")
                # the live replica reports its own accounts, and only those
                assert (down_change in seen) == (account in mine[0])
            assert (late, str(added), "TaskAppeared", "1") not in seen

            async with running(configs[1], metrics=metrics[2]) as restarted:
                assert {s.source.account for s in restarted.statuses.values()} == mine[1]
                await polls_done(restarted, 2)
                await polls_done(first, 1)

    events = await stream_events(nats_server.url)
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "an event id was stored twice"
    assert Counter(change_key(e) for e in events) == Counter(expected)

    # attribution from each replica's own registry: it polled only its accounts, and the events it
    # counted as published add up to exactly its accounts' share of the stream (a replica publishing
    # another's changes would inflate its count even though JetStream drops the duplicate)
    per_account = Counter(e.account for e in events)
    assert set(polled_accounts(metrics[0])) == mine[0]
    assert set(polled_accounts(metrics[1])) == set(polled_accounts(metrics[2])) == mine[1]
    assert published_count(metrics[0]) == sum(per_account[a] for a in mine[0])
    assert published_count(metrics[1]) + published_count(metrics[2]) == sum(per_account[a] for a in mine[1])
