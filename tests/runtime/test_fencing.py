"""Two writers of one source on one NATS: the one that loses the compare-and-set stops polling it."""

from __future__ import annotations

import anyio
import nats

from poller.pipeline.store import StateStore
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000001


async def test_the_loser_of_a_commit_race_stops_polling_and_never_overwrites(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=3) as sim:
        tasks = [sim.add_task(APP, state=0) for _ in range(4)]
        # static sharding: without leases, both processes poll, and only fencing keeps the state whole
        config = make_config(nats_server.url, [tencent_source(sim, [APP])], coordination={"mode": "static"})
        async with running(config) as first:
            await polls_done(first, 2)
            # a second process with the same file: it loads the committed state and polls too
            async with running(config) as second:
                await polls_done(second, 1)
                states = iter([1, 5, 1, 5, 1, 5, 1, 5])
                losers = []
                for _ in range(8):
                    sim.set_state(APP, tasks[0], next(states))
                    await anyio.sleep(0.3)
                    losers = [s for s in (first, second) if any(x.fenced for x in s.statuses.values())]
                    if losers:
                        break
                assert len(losers) == 1, "exactly one of the two writers must be fenced"
                loser = losers[0]
                winner = second if loser is first else first
                assert not any(x.fenced for x in winner.statuses.values())
                # the loser polls no more, while the winner goes on and commits
                key = next(iter(loser.statuses))
                stopped_at = loser.statuses[key].last_success
                sim.set_state(APP, tasks[1], 1)
                await polls_done(winner, 3)
                assert loser.statuses[key].last_success == stopped_at
                nc = await nats.connect(nats_server.url)
                try:
                    kv = await nc.jetstream().key_value(config.nats.state_bucket)

                    async def committed_by_winner() -> bool:
                        state = await StateStore(kv).load(winner.statuses[key].key)
                        return state.entities[str(tasks[1])].raw == "1"

                    await wait_until(committed_by_winner, timeout=10)
                finally:
                    await nc.close()
    events = await stream_events(nats_server.url)
    changes = [(e.entity_id, e.seq) for e in events if hasattr(e, "seq")]
    assert len(changes) == len(set(changes)), "no change of an entity published twice under two ids"
