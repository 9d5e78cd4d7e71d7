"""``/readyz`` says whether this process can do its job; vendor trouble is in the body, not the verdict."""

from __future__ import annotations

import json

import aiohttp
import msgspec

from poller.ops.readiness import readiness
from poller.ops.status import ServiceView, SourceView
from poller.simulators.base import Fault
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from tests.helpers import make_config, running, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source


async def _readyz(port: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, json.loads(await resp.text())


async def test_a_hung_or_failing_vendor_is_named_in_the_body_and_the_process_stays_ready(
    nats_server: NatsServer,
) -> None:
    healthy = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    hung = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    refusing = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    async with healthy, hung, refusing:
        for sim, app in ((healthy, 1400000101), (hung, 1400000102), (refusing, 1400000103)):
            sim.add_task(app, state=1)
        hung.inject(Fault.HANG)
        refusing.inject(Fault.AUTH)
        config = make_config(
            nats_server.url,
            [
                tencent_source(healthy, [1400000101], account="fine"),
                tencent_source(hung, [1400000102], account="hung", request_timeout=60),
                tencent_source(refusing, [1400000103], account="refused"),
            ],
            http={"enabled": True, "host": "127.0.0.1", "port": 0},
        )
        async with running(config) as service:
            await wait_until(lambda: service.http_port is not None)
            port = service.http_port
            assert port is not None

            async def refused_reported() -> bool:
                body = (await _readyz(port))[1]
                failing = body["sources_failing"]
                assert isinstance(failing, list)
                return any(p["account"] == "refused" and p["problem"] == "failing" for p in failing)

            await wait_until(refused_reported, timeout=15)
            await wait_until(lambda: service.statuses["tencent-ccc.fine.1400000101"].last_success is not None)
            status, body = await _readyz(port)
            # the process can do its job: NATS, stream and bucket are there
            assert status == 200 and body["ready"] is True and body["failing"] == []
            problems = {p["account"]: p for p in body["sources_failing"]}  # type: ignore[attr-defined]
            assert set(problems) == {"hung", "refused"}, problems
            assert problems["hung"]["problem"] == "never_succeeded" and problems["hung"]["reason"] is None
            assert problems["refused"]["problem"] == "failing"
            assert problems["refused"]["reason"] == "auth_failed"
            assert "AuthFailure" in problems["refused"]["detail"]
            assert body["sources_ok"] == 1

            # a vendor that recovers leaves the list at its next good cycle
            refusing.clear_faults()
            await wait_until(
                lambda: service.statuses["tencent-ccc.refused.1400000103"].failure_reason is None, timeout=15
            )
            status, body = await _readyz(port)
            assert status == 200
            assert [p["account"] for p in body["sources_failing"]] == ["hung"]  # type: ignore[attr-defined]

            # stopping is the process's own state: unready at once
            service.stop()
            stopping = readiness(service.status_view())
            assert not stopping.ready and stopping.failing == ["not_stopping"]


def test_a_source_whose_state_commit_is_refused_fails_the_states_committed_check() -> None:
    """Only a source this replica polls counts: another replica's refusal is in that one's body."""

    def source(key: str, *, owned: bool, refused: str | None) -> SourceView:
        return SourceView(
            key=key,
            vendor="tencent-ccc",
            account=key,
            scope="",
            poll_interval=1.0,
            started=0.0,
            last_success=1.0,
            degraded=False,
            owned=owned,
            commit_refused=refused,
        )

    view = ServiceView(
        nats_connected=True,
        stream_and_bucket=True,
        stopping=False,
        sources=[
            source("b", owned=True, refused="payload_too_large: message size exceeds maximum allowed"),
            source("a", owned=False, refused="payload_too_large: message size exceeds maximum allowed"),
            source("c", owned=True, refused=None),
        ],
    )
    verdict = readiness(view, now=2.0)
    assert not verdict.ready and verdict.failing == ["states_committed"]
    assert verdict.uncommitted_sources == ["b"]
    fine = msgspec.structs.replace(view, sources=[source("c", owned=True, refused=None)])
    assert readiness(fine, now=2.0).ready
