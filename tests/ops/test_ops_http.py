"""/healthz, /readyz and /metrics during a real run on a real nats-server."""

from __future__ import annotations

import json
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from poller.ops.readiness import readiness
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from tests.helpers import make_config, polls_done, running, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000600


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def test_metrics_scraped_and_readiness_follows_nats(nats_server: NatsServer) -> None:
    sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    async with sim:
        task = sim.add_task(APP, state=0)
        config = make_config(
            nats_server.url,
            [tencent_source(sim, [APP])],
            http={"enabled": True, "host": "127.0.0.1", "port": 0},
        )
        async with running(config) as service:
            await wait_until(lambda: service.http_port is not None)
            port = service.http_port
            assert port is not None
            await polls_done(service, 1)
            sim.set_state(APP, task, 1)
            await polls_done(service, 2)
            assert (await _get(port, "/healthz"))[0] == 200
            assert (await _get(port, "/readyz"))[0] == 200

            status, text = await _get(port, "/metrics")
            assert status == 200
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }

            def total(name: str, **labels: str) -> float:
                return sum(
                    v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)
                )

            assert total("aicc_vendor_requests_total", vendor="tencent-ccc", outcome="ok") >= 2
            assert total("aicc_events_total", type="task-status-changed") == 1
            assert total("aicc_events_total", type="task-appeared") == 1
            assert total("aicc_poll_cycle_seconds_count", vendor="tencent-ccc") >= 2
            assert total("aicc_entities_tracked") == 1
            assert total("aicc_nats_connected") == 1
            assert total("aicc_ratelimit_limit", api="DescribeAutoCalloutTasks") == 20

            # a source without a good cycle for max(3 x interval, 30 s) is named in the body, but a
            # vendor's trouble does not make the process unready (no restart fixes a vendor)
            later = readiness(service.status_view(), now=time.monotonic() + 31)
            assert later.ready and later.failing == []
            assert [(p.key, p.problem) for p in later.sources_failing] == [
                ("tencent-ccc.tc-main.1400000600", "stale")
            ]

            nats_server.stop()
            await wait_until(lambda: not service.nats_connected, timeout=10)
            status, body = await _get(port, "/readyz")
            assert status == 503
            assert json.loads(body)["failing"][0] == "nats_connected"
            assert (await _get(port, "/healthz"))[0] == 200  # alive all the same: no restart loop
            nats_server.start()
            await wait_until(lambda: service.nats_connected, timeout=15)
            await polls_done(service, 1)
            status, body = await _get(port, "/readyz")
            assert status == 200 and json.loads(body)["failing"] == []


async def test_healthz_answers_while_nats_is_still_unreachable() -> None:
    """A liveness probe must not restart a poller that is only waiting for NATS."""
    from poller.tools.natsserver import free_port

    config = make_config(
        f"nats://127.0.0.1:{free_port()}", [], http={"enabled": True, "host": "127.0.0.1", "port": 0}
    )
    import anyio

    from poller.runtime.service import Service

    service = Service(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run)
        await wait_until(lambda: service.http_port is not None, timeout=10)
        assert service.http_port is not None
        assert (await _get(service.http_port, "/healthz"))[0] == 200
        status, body = await _get(service.http_port, "/readyz")
        assert status == 503 and "nats_connected" in body
        tg.cancel_scope.cancel()
