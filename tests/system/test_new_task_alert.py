"""End to end: the poller's first listing of an account is its inventory, not "new tasks".

A real poller polls the Tencent CCC simulator and publishes to a real nats-server; ``poller
notify``'s ``new-task`` preset then announces only the task created after that first listing.
"""

from __future__ import annotations

from typing import Any

import anyio
from aiohttp import web

from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from poller.tools.notify import Notifier, parse_notify_config
from schemas import TaskAppeared
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000500


async def test_only_a_task_created_after_the_first_listing_is_announced(nats_server: NatsServer) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    notify = parse_notify_config(
        {
            "nats": {"url": nats_server.url},
            "notifier": {"deliver": "all"},
            "targets": {"hook": {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"}},
            "notify": [{"name": "new", "target": "hook", "preset": "new-task"}],
        }
    )
    try:
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
            inventory = {sim.add_task(APP, state=1) for _ in range(3)}
            config = make_config(nats_server.url, [tencent_source(sim, [APP], poll_interval=0.2)])
            async with running(config) as service, anyio.create_task_group() as tg:
                await polls_done(service, 1)
                tg.start_soon(Notifier(notify).run)
                created = sim.add_task(APP, state=1)
                await wait_until(lambda: len(received) >= 1, timeout=15)
                await polls_done(service, 2)
                await anyio.sleep(0.5)
                tg.cancel_scope.cancel()
    finally:
        await runner.cleanup()
    appeared = [e for e in await stream_events(nats_server.url) if isinstance(e, TaskAppeared)]
    flags = {e.entity_id: e.initial_inventory for e in appeared if e.kind.value == "task"}
    assert flags == {**{str(t): True for t in inventory}, str(created): False}
    assert [e["entity_id"] for body in received for e in body["events"]] == [str(created)]
