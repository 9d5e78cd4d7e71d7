"""Joining a fleet-wide limit, on the leases' own buckets in a real nats-server: no account of a
replica spends the limit before every other replica spending it has taken its smaller share."""

from __future__ import annotations

import time

import anyio
import nats

from poller.config import CoordinationConfig
from poller.runtime.connection import ensure_coordination
from poller.runtime.leases import HANDOVER_WINDOW, Budget, Ownership
from poller.tools.natsserver import NatsServer
from tests.helpers import wait_until

BUDGET: Budget = ("alibaba-aiccs", "ListTask")
TTL = 5.0


def _ownership(members: object, leases: object, replica: str, shares: dict[str, float]) -> Ownership:
    def apply(new: dict[Budget, float]) -> None:
        shares[replica] = new[BUDGET]

    return Ownership(
        members, leases, replica, TTL, budgets_of=lambda _account: frozenset({BUDGET}), apply_shares=apply
    )


async def test_an_account_taken_while_the_limit_is_being_joined_waits_for_the_join(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        members, leases = await ensure_coordination(nc.jetstream(), CoordinationConfig(lease_ttl=TTL), 1)
        shares: dict[str, float] = {}
        peer = _ownership(members, leases, "peer", shares)
        assert await peer.hold("alibaba-aiccs.p") is not None  # alone: all of the limit
        assert shares["peer"] == 1.0
        me = _ownership(members, leases, "me", shares)
        returned: dict[str, tuple[float, float]] = {}

        async def hold(account: str) -> None:
            start_at = await me.hold(account)
            assert start_at is not None
            returned[account] = (start_at, time.time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, "alibaba-aiccs.a")
            await anyio.sleep(0.5)  # the first account is joining the limit
            tg.start_soon(hold, "alibaba-aiccs.b")  # a second one, handed over meanwhile
            await anyio.sleep(1.0)
            # the peer has not read the members since: it still spends all of the limit
            assert returned == {}, returned
            assert shares["peer"] == 1.0
            peer_reads = time.time()
            tg.start_soon(peer.keep_membership)
            await wait_until(lambda: len(returned) == 2, timeout=TTL)
            tg.cancel_scope.cancel()
        assert shares == {"peer": 0.5, "me": 0.5}
        for start_at, _ in returned.values():
            # and the peer's requests from before its smaller share leave the vendor's window first
            assert start_at >= peer_reads + HANDOVER_WINDOW, (start_at, peer_reads)
    finally:
        await nc.close()
