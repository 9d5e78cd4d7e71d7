"""NATS refusals no retry can fix: reported once with their reason, never retried in a hot loop."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import anyio
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import KeyValueConfig

from poller.errors import InternalError
from poller.pipeline.nats_faults import permanent_fault
from poller.runtime.service import Service
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import (
    DegradeReason,
    Event,
    SourceDegraded,
    SourceRecovered,
    TaskAppeared,
    TaskStatusChanged,
)
from tests.helpers import make_config, running, stream_events, wait_until
from tests.runtime.processes import Poller, simulator, write_config
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

AUTH = "authorization { user: poller, password: right-password-42 }"
BIG_APP, SMALL_APP = 1400000910, 1400000911


async def _events(url: str) -> list[Event]:
    """The stream's events; none while it is still empty."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("AICC")
    finally:
        await nc.close()
    return await stream_events(url) if info.state.messages else []


async def _readyz(port: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, json.loads(await resp.text())


def test_wrong_nats_password_exits_3_with_one_clear_line(tmp_path: Path) -> None:
    source = {
        "vendor": "tencent-ccc",
        "account": "auth",
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "sdk_app_ids": [BIG_APP],
        "endpoint": "http://127.0.0.1:9",
    }
    with NatsServer(config=AUTH) as server:
        nats_part = 'user = "poller"\npassword = "wrong-password-17"'
        config = write_config(tmp_path / "p.toml", server.url, [source], nats_extra=nats_part)
        poller = Poller(config)
        try:
            code = poller.wait(20)
        finally:
            poller.kill()
    assert code == 3, poller.stderr[-2000:]
    lines = [json.loads(line) for line in poller.err]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1 and "refused the credentials" in errors[0]["message"], poller.stderr
    assert "Traceback" not in poller.stderr and "wrong-password-17" not in poller.stderr


def test_credentials_revoked_while_running_stop_the_poller_with_exit_3(tmp_path: Path) -> None:
    with NatsServer(config=AUTH) as server, simulator("tencent-ccc") as sources:
        nats_part = 'user = "poller"\npassword = "right-password-42"'
        config = write_config(tmp_path / "p.toml", server.url, sources, nats_extra=nats_part)
        poller = Poller(config)
        try:
            poller.wait_for("poller started")
            server.reconfigure(AUTH.replace("right-password-42", "rotated-password-43"))
            try:
                code = poller.wait(30)
            except Exception:
                raise AssertionError(poller.stderr[-3000:]) from None
        finally:
            poller.kill()
    assert code == 3, poller.stderr[-3000:]
    assert "refused the credentials on reconnect" in poller.stderr
    assert "Traceback" not in poller.stderr and "right-password-42" not in poller.stderr


async def test_right_nats_password_connects() -> None:
    with NatsServer(config=AUTH) as server:
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
            sim.add_task(SMALL_APP)
            nats_cfg = {"user": "poller", "password": "right-password-42"}
            config = make_config(server.url, [tencent_source(sim, [SMALL_APP])], nats=nats_cfg)
            service = Service(config)
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run)
                with anyio.fail_after(15):
                    await service.started.wait()
                service.stop()


async def test_a_stream_whose_subjects_conflict_is_reported_once_and_not_retried_hot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with NatsServer() as server:
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="SOMEONE_ELSE", subjects=["aicc.>"])
        await nc.close()
        config = make_config(server.url, [], http={"enabled": True, "host": "127.0.0.1", "port": 0})
        service = Service(config)
        with caplog.at_level(logging.INFO):
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run)
                await wait_until(lambda: service.http_port is not None)
                assert service.http_port is not None

                async def refused() -> bool:
                    assert service.http_port is not None
                    status, body = await _readyz(service.http_port)
                    return status == 503 and "nats_accepts" in body["failing"]  # type: ignore[operator]

                await wait_until(refused, timeout=10)
                await anyio.sleep(3)
                status, body = await _readyz(service.http_port)
                assert status == 503 and "stream_and_bucket" in body["failing"]  # type: ignore[operator]
                faults = body["nats_faults"]
                assert isinstance(faults, list) and "overlap" in faults[0] and "rejected" in faults[0]
                metrics = service.metrics_exposition().decode()
                assert (
                    'aicc_nats_refusals_total{code="rejected",operation="stream and bucket set-up"} 1.0'
                    in metrics
                )
                tg.cancel_scope.cancel()
        tries = [r for r in caplog.records if r.getMessage().startswith("stream and bucket set-up")]
        assert len(tries) == 1 and tries[0].levelno == logging.ERROR  # one report, no retry within 3 s


async def test_an_event_larger_than_nats_accepts_degrades_its_source_and_the_rest_keeps_going() -> None:
    with NatsServer(config="max_payload: 16384") as server:
        # slow polls and a generous simulator: no throttling that would open the episode first
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=200) as sim:
            sim.add_task(BIG_APP, name="x" * 20000)
            sim.add_task(BIG_APP, name="fits")
            small = sim.add_task(SMALL_APP, state=0)
            big = tencent_source(sim, [BIG_APP], account="big", failure_backoff=0.5, poll_interval=0.3)
            config = make_config(
                server.url,
                [big, tencent_source(sim, [SMALL_APP], account="small", poll_interval=0.3)],
                http={"enabled": True, "host": "127.0.0.1", "port": 0},
            )
            service = Service(config)
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run)
                with anyio.fail_after(15):
                    await service.started.wait()

                async def degraded() -> bool:
                    events = await _events(server.url)
                    return any(isinstance(e, SourceDegraded) and e.account == "big" for e in events)

                await wait_until(degraded, timeout=15)
                requests_then = sim.log.count()
                sim.set_state(SMALL_APP, small, 1)  # the other source keeps publishing

                async def small_moved() -> bool:
                    events = await stream_events(server.url)
                    return any(e.account == "small" and isinstance(e, TaskStatusChanged) for e in events)

                await wait_until(small_moved, timeout=15)
                await anyio.sleep(2)
                assert service.http_port is not None
                status, body = await _readyz(service.http_port)
                big_requests = sim.log.count() - requests_then
                metrics = service.metrics_exposition().decode()
                tg.cancel_scope.cancel()
            events = await stream_events(server.url)
    (event,) = [e for e in events if isinstance(e, SourceDegraded) and e.account == "big"]
    assert event.reason == DegradeReason.PUBLISH_REJECTED
    assert "payload_too_large" in event.detail and "task-appeared" in event.detail
    assert not any(isinstance(e, TaskAppeared) and len(e.name or "") > 10000 for e in events)
    assert any(isinstance(e, TaskAppeared) and e.account == "small" for e in events)
    assert 'aicc_nats_refusals_total{code="payload_too_large",operation="publish"}' in metrics
    assert status == 503 and body["rejected_sources"] and "events_accepted" in body["failing"]  # type: ignore[operator]
    # backing off, not a hot loop: both sources together made few requests in ~2 s and more
    assert big_requests < 200


PERMISSIONS = """
authorization {
  users = [{
    user: poller, password: right-password-42,
    permissions: {
      publish: {allow: ["$JS.API.>", "$KV.>", "_INBOX.>", %s]},
      subscribe: {allow: [">"]}
    }
  }]
}
"""
ALLOWED_ONLY, EVERY_EVENT = '"aicc.tencent-ccc.allowed.>"', '"aicc.>"'


async def test_an_event_subject_without_publish_permission_is_its_sources_rejection_at_once() -> None:
    """NATS tells a publish permission violation beside the publish, never as its ack: the event on
    that subject is refused at once (the source's ``publish_rejected``, not a connection fault nor a
    publish retried on timeouts), the other source keeps going, and once the permission is granted
    the refused source's events are in the stream exactly once."""
    with NatsServer(config=PERMISSIONS % ALLOWED_ONLY) as server:
        url = server.url.replace("nats://", "nats://poller:right-password-42@")
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
            sim.add_task(BIG_APP)
            sim.add_task(SMALL_APP)
            config = make_config(
                server.url,
                [
                    tencent_source(sim, [BIG_APP], account="denied", failure_backoff=0.2),
                    tencent_source(sim, [SMALL_APP], account="allowed"),
                ],
                # a timeout far longer than the test waits for the refusal
                nats={"user": "poller", "password": "right-password-42", "ack_timeout": 8.0},
                http={"enabled": True, "host": "127.0.0.1", "port": 0},
            )
            async with running(config) as service:
                await wait_until(lambda: service.http_port is not None)
                port = service.http_port
                assert port is not None

                async def refused() -> bool:
                    status, body = await _readyz(port)
                    return status == 503 and "events_accepted" in body["failing"]  # type: ignore[operator]

                with anyio.fail_after(6):  # well before one ack could time out
                    await wait_until(refused, timeout=6)
                allowed = next(s for s in service.statuses.values() if s.source.account == "allowed")
                await wait_until(lambda: allowed.last_success is not None, timeout=15)
                _, body = await _readyz(port)
                metrics = service.metrics_exposition().decode()
                server.reconfigure(PERMISSIONS % EVERY_EVENT)  # the operator grants the permission

                async def published() -> bool:
                    return any(e.account == "denied" for e in await _events(url))

                await wait_until(published, timeout=20)
                await wait_until(lambda: all(s.caught_up for s in service.statuses.values()), timeout=10)
            events = await _events(url)
    (denied,) = body["rejected_sources"]  # type: ignore[misc]
    assert "tencent-ccc.denied" in denied and body["nats_faults"] == []
    (problem,) = body["sources_failing"]  # type: ignore[misc]
    assert problem["reason"] == "publish_rejected" and "permission" in problem["detail"]
    assert '"aicc.tencent-ccc.denied.' in problem["detail"]
    assert 'aicc_nats_refusals_total{code="permission",operation="publish"}' in metrics
    assert 'operation="connection"' not in metrics
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))
    appeared = [e for e in events if isinstance(e, TaskAppeared)]
    assert sorted(e.account for e in appeared) == ["allowed", "denied"]


def test_permanent_and_transient_nats_failures_are_told_apart() -> None:
    overlap = nats.js.errors.BadRequestError(code=400, err_code=10065, description="subjects overlap")
    too_big = nats.js.errors.APIError(code=400, err_code=10054, description="message size exceeds maximum")
    no_js = nats.js.errors.ServiceUnavailableError(code=503, err_code=10039, description="not enabled")
    cas = nats.js.errors.KeyWrongLastSequenceError(description="wrong last sequence")
    permanent = [
        (nats.errors.MaxPayloadError(), "payload_too_large"),
        (too_big, "payload_too_large"),
        (overlap, "rejected"),
        (no_js, "no_jetstream"),
        (nats.errors.AuthorizationError(), "authorization"),
        (nats.errors.Error("nats: 'Permissions Violation for Publish to \"aicc.x\"'"), "permission"),
    ]
    for exc, code in permanent:
        fault = permanent_fault(exc)
        assert fault is not None and fault.code == code, exc
    transient = [
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
        nats.errors.ConnectionClosedError(),
        nats.errors.ConnectionReconnectingError(),
        nats.js.errors.ServiceUnavailableError(code=503, description="jetstream starting"),
        ConnectionResetError(),
        cas,
        InternalError("not a NATS failure"),
    ]
    assert [permanent_fault(exc) for exc in transient] == [None] * len(transient)


async def test_a_state_commit_refused_for_good_is_on_readyz_and_clears_when_a_commit_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A state bucket whose values may not be as large as a state: the commit is refused for good.
    Polling and events go on (the stream is the write-ahead log), but /readyz, the metrics and one
    ``source-degraded`` (reason ``commit_rejected``) say so until an operator lifts the limit."""
    monkeypatch.setattr("poller.runtime.connection.PERMANENT_RETRY", 0.4)  # retried slowly, sooner here
    with NatsServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.create_key_value(KeyValueConfig(bucket="aicc_poller_state", history=1, max_value_size=32))
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=200) as sim:
            task = sim.add_task(SMALL_APP, state=0)
            config = make_config(
                server.url,
                [tencent_source(sim, [SMALL_APP], poll_interval=0.2)],
                http={"enabled": True, "host": "127.0.0.1", "port": 0},
                shutdown_grace=1.0,  # a commit still refused at the stop is given up after it
            )
            async with running(config) as service:
                await wait_until(lambda: service.http_port is not None)
                assert service.http_port is not None
                port = service.http_port

                async def uncommitted() -> bool:
                    status, body = await _readyz(port)
                    # the check at once, the source's health from the end of its next cycle
                    failing = "states_committed" in body["failing"]  # type: ignore[operator]
                    return status == 503 and failing and bool(body["sources_failing"])

                await wait_until(uncommitted, timeout=15)
                _, refused = await _readyz(port)
                sim.set_state(SMALL_APP, task, 1)  # polling goes on meanwhile

                async def moved() -> bool:
                    return any(isinstance(e, TaskStatusChanged) for e in await _events(server.url))

                await wait_until(moved, timeout=15)
                metrics = service.metrics_exposition().decode()
                (key,) = service.statuses
                info = await js.stream_info("KV_aicc_poller_state")
                info.config.max_msg_size = -1  # the operator lifts the limit
                await js.update_stream(info.config)

                async def ready() -> bool:
                    status, _ = await _readyz(port)
                    return status == 200

                await wait_until(ready, timeout=15)

                async def recovered() -> bool:
                    return any(isinstance(e, SourceRecovered) for e in await _events(server.url))

                await wait_until(recovered, timeout=15)
                _, cleared = await _readyz(port)
            events = await _events(server.url)
        kv = await js.key_value("aicc_poller_state")
        committed = [k for k in await kv.keys() if k.endswith(".meta")]
        await nc.close()
    assert refused["uncommitted_sources"] == [key]
    (problem,) = refused["sources_failing"]  # type: ignore[misc]
    assert problem["reason"] == "commit_rejected" and "payload_too_large" in problem["detail"]
    assert 'aicc_nats_refusals_total{code="payload_too_large",operation="state commit"}' in metrics
    assert 'aicc_state_commits_total{result="refused",vendor="tencent-ccc"}' in metrics
    (degraded,) = [e for e in events if isinstance(e, SourceDegraded)]
    assert degraded.reason == DegradeReason.COMMIT_REJECTED and degraded.api == "state commit"
    assert "payload_too_large" in degraded.detail
    (back,) = [e for e in events if isinstance(e, SourceRecovered)]
    assert back.episode == degraded.episode
    assert cleared["failing"] == [] and cleared["uncommitted_sources"] == []
    assert committed  # the state is in the bucket now


#: the poller may not write the state of one source; the test's own user reads everything
KV_DENIED = """
authorization {
  users = [
    {user: admin, password: admin-password-29},
    {
      user: poller, password: right-password-42,
      permissions: {publish: {allow: [">"], deny: [%s]}, subscribe: {allow: [">"]}}
    }
  ]
}
"""
ADMIN = "nats://admin:admin-password-29@"


async def test_a_state_commit_without_permission_is_its_sources_commit_rejected_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """NATS refuses one source's state commit for lack of permission on its keys' subject. It tells
    so only beside the request, which itself would time out: the store's write fails at once, so the
    commit is that source's ``commit_rejected`` naming the bucket and key (not a connection fault),
    counted, while its events go on. Once permitted, a restarted poller replays what was published
    but not committed: everything is committed and each event is in the stream exactly once."""
    monkeypatch.setattr("poller.runtime.connection.PERMANENT_RETRY", 0.4)
    with NatsServer(config=KV_DENIED % '"$KV.aicc_poller_state.tencent-ccc.denied.>"') as server:
        admin = server.url.replace("nats://", ADMIN)
        async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=200) as sim:
            task = sim.add_task(BIG_APP, state=0)
            sim.add_task(SMALL_APP)
            config = make_config(
                server.url,
                [
                    tencent_source(sim, [BIG_APP], account="denied", poll_interval=0.2),
                    tencent_source(sim, [SMALL_APP], account="allowed", poll_interval=0.2),
                ],
                # a timeout far longer than the test waits for the refusal
                nats={"user": "poller", "password": "right-password-42", "ack_timeout": 8.0},
                http={"enabled": True, "host": "127.0.0.1", "port": 0},
                shutdown_grace=1.0,
            )
            with caplog.at_level(logging.WARNING, logger="poller.runtime"):
                async with running(config) as service:
                    await wait_until(lambda: service.http_port is not None)
                    port = service.http_port
                    assert port is not None

                    async def commit_rejected() -> bool:
                        status, body = await _readyz(port)
                        return status == 503 and any(
                            p["reason"] == "commit_rejected"  # type: ignore[index]
                            for p in body["sources_failing"]  # type: ignore[attr-defined]
                        )

                    with anyio.fail_after(6):  # well before one commit could time out
                        await wait_until(commit_rejected, timeout=6)
                    _, refused = await _readyz(port)
                    metrics = service.metrics_exposition().decode()
                    (denied,) = [k for k, s in service.statuses.items() if s.source.account == "denied"]
                    sim.set_state(BIG_APP, task, 1)  # events go on while the state is not committed

                    async def moved() -> bool:
                        return any(isinstance(e, TaskStatusChanged) for e in await _events(admin))

                    await wait_until(moved, timeout=15)
            transient = [r for r in caplog.records if r.getMessage() == "state commit failed, retrying"]
            server.reconfigure(KV_DENIED % '"nobody.>"')  # the operator grants the permission
            sim.set_state(BIG_APP, task, 2)
            async with running(config) as service:  # loads what is committed, replays the rest
                await wait_until(lambda: service.http_port is not None)
                port = service.http_port
                assert port is not None

                async def settled() -> bool:
                    status, _ = await _readyz(port)
                    events = await _events(admin)
                    return status == 200 and any(isinstance(e, SourceRecovered) for e in events)

                await wait_until(settled, timeout=20)
                await wait_until(lambda: all(s.caught_up for s in service.statuses.values()), timeout=10)
            events = await _events(admin)
        nc = await nats.connect(admin)
        kv = await nc.jetstream().key_value("aicc_poller_state")
        committed = {k.removesuffix(".meta") for k in await kv.keys() if k.endswith(".meta")}
        await nc.close()
    assert refused["failing"] == ["states_committed"] and refused["nats_faults"] == []
    assert refused["uncommitted_sources"] == [denied]
    (problem,) = refused["sources_failing"]  # type: ignore[misc]
    assert problem["key"] == denied and problem["reason"] == "commit_rejected"
    # the bucket and the source's key (its numeric app id masked, as all text leaving the process)
    detail = problem["detail"]
    assert "permission" in detail and '"$KV.aicc_poller_state.tencent-ccc.denied.' in detail
    assert 'aicc_nats_refusals_total{code="permission",operation="state commit"}' in metrics
    assert 'aicc_state_commits_total{result="refused",vendor="tencent-ccc"}' in metrics
    assert 'operation="connection"' not in metrics
    assert transient == []  # refused at once, never waited out as a timeout
    assert committed == set(service.statuses)
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))
    mine = [e for e in events if e.account == "denied"]
    assert [type(e) for e in mine].count(TaskAppeared) == 1
    moves = [e for e in mine if isinstance(e, TaskStatusChanged)]
    assert len(moves) == 2 and len({e.event_id for e in moves}) == 2
    (degraded,) = [e for e in mine if isinstance(e, SourceDegraded)]
    assert degraded.reason == DegradeReason.COMMIT_REJECTED and "permission" in degraded.detail
    (back,) = [e for e in mine if isinstance(e, SourceRecovered)]
    assert back.episode == degraded.episode
