"""Tencent CCC Data Push into a running poller, beside polling, on a real nats-server."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio

from poller.simulators.push import PushPlan
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import CallFinished
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000055
USER, PASSWORD = "tccc-push", "push-password-never-logged"


def _config(nats_url: str, sim: TencentCccSimulator, **push: Any) -> Any:
    source = tencent_source(sim, [APP], poll_interval=1.0, cdr_settle=30)
    receiver = {"vendor": "tencent-ccc", "account": "tc-main", "username": USER, "password": PASSWORD}
    return make_config(nats_url, [source], push={"enabled": True, "port": 0, "receivers": [receiver], **push})


def _calls(events: list[Any]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


def _record(sim: TencentCccSimulator, task: int, end_status: int = 1) -> tuple[bytes, str, int]:
    """A pushed record of a call the task placed (never listed, so only the push can bring it),
    written out by hand; its session id and end."""
    cdr = sim.place_call(APP, task, listed=False)
    body = (
        b'{"SdkAppId":%d,"SessionId":"%s","EndStatus":%d,"Callee":"13800138000",'
        b'"Direction":1,"EndedTimestamp":%d}' % (APP, cdr.SessionId.encode(), end_status, cdr.EndedTimestamp)
    )
    return body, cdr.SessionId, cdr.EndedTimestamp or 0


async def test_every_call_once_by_push_or_poll_with_half_the_pushes_lost(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=3) as sim:
        task = sim.add_task(APP, state=1, callees=40)
        async with running(_config(nats_server.url, sim)) as service:
            await polls_done(service, 1)
            assert service.push_port
            url = f"http://127.0.0.1:{service.push_port}/push/tencent-ccc/tc-main?action=cdr&version=1"
            sim.push_to(PushPlan(url, USER, PASSWORD, drop=0.5, duplicate=0.3, reorder=0.3))
            placed = [sim.place_call(APP, task) for _ in range(24)]
            await sim.pushes_settled()

            async def all_there() -> bool:
                return len(_calls(await stream_events(nats_server.url))) >= len(placed)

            await wait_until(all_there, timeout=10)  # the dropped ones: within a polling cycle
            await polls_done(service, 2)
            stats = service.push.stats if service.push else None
        events = await stream_events(nats_server.url)

    calls = _calls(events)
    assert Counter(c.call_id for c in calls) == Counter(c.SessionId for c in placed)
    assert {c.task_id for c in calls} == {str(task)}  # by push as by polling
    dropped = {p.session_id for p in sim.pushes if p.outcome == "dropped"}
    learned = {c.call_id: c.learned_by for c in calls}
    assert 0 < len(dropped) < len(placed)
    assert all(learned[s] == "poll" for s in dropped)
    assert any(by == "push" for by in learned.values())
    assert all(p.outcome in ("acked", "duplicate-acked", "dropped") for p in sim.pushes)
    assert stats is not None and stats.outcomes.get("duplicate", 0) == sum(
        1 for p in sim.pushes if p.outcome == "duplicate-acked"
    )
    pushed = next(c for c in calls if c.learned_by == "push")
    assert pushed.callee_number is not None and "*" in pushed.callee_number


async def test_unauthenticated_oversized_and_malformed_pushes_publish_nothing(
    nats_server: NatsServer,
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=1)
        config = _config(nats_server.url, sim, max_body_bytes=4096, client_rate=30)
        good = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        bad = base64.b64encode(f"{USER}:wrong".encode()).decode()
        record, session, ended = _record(sim, task)
        attempts = [
            ({}, record, "application/json", 401),
            ({"Authorization": f"Basic {bad}"}, record, "application/json", 401),
            ({"Authorization": "Bearer x"}, record, "application/json", 401),
            ({"Authorization": f"Basic {good}"}, b"{" + b" " * 5000 + b"}", "application/json", 413),
            ({"Authorization": f"Basic {good}"}, record, "text/plain", 415),
            ({"Authorization": f"Basic {good}"}, b"not json", "application/json", 400),
            ({"Authorization": f"Basic {good}"}, b'{"SessionId": 5}', "application/json", 400),
            ({"Authorization": f"Basic {good}"}, record.replace(b"%d" % APP, b"1"), "application/json", 400),
            (
                {"Authorization": f"Basic {good}"},
                record.replace(b',"EndedTimestamp":%d' % ended, b""),
                "application/json",
                400,
            ),
        ]
        async with running(config) as service, aiohttp.ClientSession() as http:
            await polls_done(service, 1)
            base = f"http://127.0.0.1:{service.push_port}/push/tencent-ccc/tc-main"
            statuses = []
            for headers, body, content_type, _ in attempts:
                async with http.post(
                    base + "?action=cdr", data=body, headers={**headers, "Content-Type": content_type}
                ) as resp:
                    statuses.append(resp.status)
            async with http.post(base.replace("tc-main", "nobody") + "?action=cdr", data=record) as resp:
                statuses.append(resp.status)
            async with http.post(
                base + "?action=what",
                data=record,
                headers={"Authorization": f"Basic {good}", "Content-Type": "application/json"},
            ) as resp:
                statuses.append(resp.status)
            # a flood from one client: refused with 429 beyond the client's rate
            flood = []
            for _ in range(40):
                async with http.post(base, data=b"{}") as resp:
                    flood.append(resp.status)
            await polls_done(service, 1)
            middle = _calls(await stream_events(nats_server.url))
            # still serving: a good push goes through after all that (once the flood's second is over)
            await anyio.sleep(1.1)
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.post(
                    base + "?action=cdr",
                    data=record,
                    headers={
                        "Authorization": f"Basic {good}",
                        "Content-Type": "application/json",
                        "X-TCCC-PUSH-UUID": "u1",
                    },
                ) as resp,
            ):
                accepted = (resp.status, await resp.json())
            exposition = service.metrics_exposition().decode()
        events = await stream_events(nats_server.url)

    assert statuses == [expected for *_, expected in attempts] + [404, 400]
    assert 429 in flood and set(flood) <= {401, 429}
    assert middle == []
    assert accepted == (200, {"ErrCode": 0})
    # every refusal is counted for /metrics, with its receiver where one matched
    for outcome in ("401", "413", "415", "400", "accepted"):
        label = f'aicc_push_requests_total{{account="tc-main",outcome="{outcome}",vendor="tencent-ccc"}}'
        assert label in exposition, outcome
    assert 'aicc_push_requests_total{account="?",outcome="429",vendor="?"}' in exposition
    (call,) = _calls(events)
    assert (call.call_id, call.learned_by, call.task_id) == (session, "push", str(task))
    assert call.callee_number == "138******00"


async def test_bodies_in_pieces_are_read_whole_and_slow_or_endless_senders_are_cut_off(
    nats_server: NatsServer,
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=1)
        config = _config(nats_server.url, sim, max_body_bytes=4096, read_timeout=0.5)
        good = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {good}", "Content-Type": "application/json"}
        record, session, _ = _record(sim, task, end_status=202)
        padded = record[:-1] + b" " * 3000 + b"}"

        async def pieces(body: bytes, pause: float = 0.0, size: int = 500) -> AsyncIterator[bytes]:
            for start in range(0, len(body), size):
                yield body[start : start + size]
                await anyio.sleep(pause)

        async with running(config) as service, aiohttp.ClientSession() as http:
            await polls_done(service, 1)
            url = f"http://127.0.0.1:{service.push_port}/push/tencent-ccc/tc-main?action=cdr"
            async with http.post(url, data=pieces(padded, 0.01), headers=headers) as resp:
                whole = resp.status
            async with http.post(url, data=pieces(padded * 2), headers=headers) as resp:
                endless = resp.status  # no Content-Length: cut off at the limit
            async with http.post(url, data=pieces(padded, 0.3, 100), headers=headers) as resp:
                slow = resp.status
        events = await stream_events(nats_server.url)
    assert (whole, endless, slow) == (200, 413, 408)
    assert [c.call_id for c in _calls(events)] == [session]


async def test_oauth_client_credentials_get_a_token_that_pushes_and_nothing_else_does(
    nats_server: NatsServer,
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=1)
        receiver = {
            "vendor": "tencent-ccc",
            "account": "tc-main",
            "oauth_client_id": "tccc-client",
            "oauth_client_secret": "oauth-secret-never-logged",
        }
        source = tencent_source(sim, [APP], poll_interval=1.0)
        config = make_config(
            nats_server.url, [source], push={"enabled": True, "port": 0, "receivers": [receiver]}
        )
        record, session, _ = _record(sim, task)
        async with running(config) as service, aiohttp.ClientSession() as http:
            await polls_done(service, 1)
            base = f"http://127.0.0.1:{service.push_port}"
            token_url = f"{base}/push/oauth/tencent-ccc/tc-main"
            form = {"grant_type": "client_credentials", "client_id": "tccc-client"}
            async with http.post(token_url, data={**form, "client_secret": "wrong"}) as resp:
                refused = resp.status
            async with http.post(
                token_url, data={**form, "client_secret": "oauth-secret-never-logged"}
            ) as resp:
                issued = await resp.json()
            push = f"{base}/push/tencent-ccc/tc-main?action=cdr"
            statuses = []
            good = issued["access_token"]
            altered = good[:-1] + ("1" if good[-1] == "0" else "0")  # never the token itself
            for token in (good, altered, "9999999999.forged"):
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                async with http.post(push, data=record, headers=headers) as resp:
                    statuses.append(resp.status)
        events = await stream_events(nats_server.url)
    assert refused == 401
    assert issued["token_type"] == "Bearer" and issued["expires_in"] > 0
    assert statuses[0] == 200 and statuses[1:] == [401, 401]
    assert [c.call_id for c in _calls(events)] == [session]
