"""``poller notify`` against local receivers that check each robot's signature, on a real stream.

The notifier runs as its own process (``python -m poller.cli notify``) with a durable consumer on a
real nats-server; events are published to the real AICC stream. It is stopped mid-way and started
again: every event is notified exactly once, a storm of line failures is one message with its
count, a degradation shorter than the rule's N minutes is never notified, and what a target keeps
refusing ends on the dead-letter subject. The receivers verify signatures the way the robots
document them (DingTalk: query ``timestamp``/``sign``; Feishu: body ``timestamp``/``sign``; WeCom:
the key in the URL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats
import pytest
from aiohttp import web

from poller.config import NatsConfig
from poller.errors import ConfigError
from poller.runtime.connection import ensure_infrastructure
from poller.tools.natsserver import NatsServer
from poller.tools.notify import DeadLetter, parse_notify_config
from poller.tools.notify.rules import render, subject_matches
from schemas import (
    CallFinished,
    CallOutcome,
    DegradeReason,
    EntityKind,
    EventBase,
    SourceDegraded,
    SourceRecovered,
    Status,
    TaskAppeared,
    TaskState,
    TaskStatusChanged,
    TaskVanished,
    encoder,
)
from schemas.events import event_type
from tests.helpers import wait_until

DING_SECRET = "SECding-test-secret"
FEISHU_SECRET = "feishu-test-secret"
WECOM_KEY = "wecom-test-key"
NOW = datetime.now(UTC)


class Receivers:
    """Local stand-ins for the robots: they check what the real ones check and record what they took."""

    def __init__(self) -> None:
        self.dingtalk: list[str] = []
        self.feishu: list[str] = []
        self.wecom: list[str] = []
        self.webhook: list[dict[str, Any]] = []
        self.refused: Counter[str] = Counter()
        self.failing_calls = 0

    async def ding(self, request: web.Request) -> web.Response:
        ts, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
        expected = base64.b64encode(
            hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < 3600_000
        body = await request.json()
        if not (fresh and hmac.compare_digest(sign, expected)) or body.get("msgtype") != "text":
            self.refused["dingtalk"] += 1
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        self.dingtalk.append(body["text"]["content"])
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def lark(self, request: web.Request) -> web.Response:
        body = await request.json()
        ts = str(body.get("timestamp", ""))
        key = f"{ts}\n{FEISHU_SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 3600
        if not (fresh and hmac.compare_digest(str(body.get("sign", "")), expected)):
            self.refused["feishu"] += 1
            return web.json_response(
                {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
            )
        self.feishu.append(body["content"]["text"])
        return web.json_response({"code": 0, "msg": "success"})

    async def wecom_send(self, request: web.Request) -> web.Response:
        if request.query.get("key") != WECOM_KEY:
            self.refused["wecom"] += 1
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        body = await request.json()
        self.wecom.append(body["text"]["content"])
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def hook(self, request: web.Request) -> web.Response:
        await anyio.sleep(0.05)  # slow enough that the stop lands mid-way
        self.webhook.append(await request.json())
        return web.Response(status=204)

    async def broken(self, request: web.Request) -> web.Response:
        self.failing_calls += 1
        return web.Response(status=503)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/robot/send", self.ding)
        app.router.add_post("/open-apis/bot/v2/hook/x", self.lark)
        app.router.add_post("/cgi-bin/webhook/send", self.wecom_send)
        app.router.add_post("/hook", self.hook)
        app.router.add_post("/broken", self.broken)
        return app


def _config(nats_url: str, base: str) -> str:
    return f"""
[nats]
url = "{nats_url}"

[notifier]
deliver = "all"
ack_wait_seconds = 2.0

[logging]
level = "WARNING"

[targets.ding]
kind = "dingtalk"
url = "{base}/robot/send?access_token=tok"
secret = "{DING_SECRET}"

[targets.lark]
kind = "feishu"
url = "{base}/open-apis/bot/v2/hook/x"
secret = "{FEISHU_SECRET}"

[targets.wecom]
kind = "wecom"
url = "{base}/cgi-bin/webhook/send?key={WECOM_KEY}"

[targets.hook]
kind = "webhook"
url = "{base}/hook"

[targets.broken]
kind = "webhook"
url = "{base}/broken"

[[notify]]
name = "failed-tasks"
preset = "task-failed-by-system"
target = "ding"

[[notify]]
name = "line-failures"
preset = "line-failures"
target = "lark"
group_window_seconds = 3.0

[[notify]]
name = "degraded"
preset = "source-degraded"
target = "wecom"
degraded_for_minutes = 0.1

[[notify]]
name = "new-tasks"
target = "hook"
types = ["task-appeared"]
kinds = ["task"]
initial_inventory = false
max_messages_per_minute = 1000
template = "new task {{entity_id}} in {{vendor}}/{{account}}"

[[notify]]
name = "vanished"
target = "broken"
types = ["task-vanished"]
max_attempts = 3
backoff_seconds = 0.1
"""


def _entity(**kw: Any) -> dict[str, Any]:
    return {"vendor": "tencent-ccc", "account": "acme", "observed_at": NOW, "kind": EntityKind.TASK, **kw}


def _events() -> list[EventBase]:
    events: list[EventBase] = []
    for i in range(500):
        outcome = CallOutcome.CALLER_IN_ARREARS if i % 2 else CallOutcome.NO_ANSWER
        events.append(
            CallFinished(
                event_id=f"call-{i}",
                vendor="byrobot",
                account="acme",
                observed_at=NOW,
                call_id=str(i),
                task_id="77",
                outcome=outcome,
                raw_outcome="x",
            )
        )
    for i in range(250):  # half in arrears above; these make it 500
        events.append(
            CallFinished(
                event_id=f"arrears-{i}",
                vendor="byrobot",
                account="acme",
                observed_at=NOW,
                call_id=f"a{i}",
                task_id="78",
                outcome=CallOutcome.CALLER_IN_ARREARS,
                raw_outcome="x",
            )
        )
    for i, (state, raw) in enumerate(
        [(TaskState.FAILED, "4"), (TaskState.PAUSED_BY_SYSTEM, "6"), (TaskState.RUNNING, "1")]
    ):
        events.append(
            TaskStatusChanged(
                **_entity(event_id=f"status-{i}", entity_id=f"t{i}", name=f"campaign {i}", seq=2),
                previous=Status(state=TaskState.RUNNING, raw="1"),
                current=Status(state=state, raw=raw),
            )
        )
    source = {"vendor": "huawei-aicc", "account": "acme", "observed_at": NOW, "api": "/rest/task/list"}
    reason = DegradeReason.THROTTLED
    events.append(SourceDegraded(event_id="deg-1", **source, reason=reason, detail="HTTP 429", episode=1))
    events.append(SourceRecovered(event_id="rec-1", **source, episode=1, degraded_seconds=3.0))
    events.append(SourceDegraded(event_id="deg-2", **source, reason=reason, detail="HTTP 429", episode=2))
    for i in range(40):
        events.append(
            TaskAppeared(
                **_entity(event_id=f"new-{i}", entity_id=f"n{i}", seq=1),
                current=Status(state=TaskState.RUNNING, raw="1"),
                initial_inventory=False,
            )
        )
    for event_id, inventory in (("inventory-0", True), ("legacy-0", None)):
        # the first listing's inventory, and a payload from before the flag: not "new tasks"
        events.append(
            TaskAppeared(
                **_entity(event_id=event_id, entity_id=event_id, seq=1),
                current=Status(state=TaskState.RUNNING, raw="1"),
                initial_inventory=inventory,
            )
        )
    events.append(
        TaskVanished(
            **_entity(event_id="gone-1", entity_id="g1", seq=3),
            previous=Status(state=TaskState.RUNNING, raw="1"),
        )
    )
    return events


async def _publish(js: Any, events: list[EventBase]) -> None:
    for event in events:
        subject = f"aicc.{event.vendor}.{event.account}.{event_type(event)}"
        headers = {"Nats-Msg-Id": event.event_id, "Aicc-Source": f"{event.vendor}.{event.account}.x"}
        await js.publish(subject, encoder.encode(event), headers=headers)


def _notifier(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "notify", "--config", str(config)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


@pytest.mark.slow
async def test_restart_mid_way_misses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    receivers = Receivers()
    runner = web.AppRunner(receivers.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    with NatsServer(store_dir=str(tmp_path / "js")) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_infrastructure(js, NatsConfig(url=server.url))
        config = tmp_path / "notify.toml"
        config.write_text(_config(server.url, f"http://127.0.0.1:{port}"))
        log = tmp_path / "notify.log"
        events = _events()
        await _publish(js, events)
        first = _notifier(config, log)
        try:
            await wait_until(lambda: len(receivers.webhook) >= 8, timeout=15)
            first.send_signal(signal.SIGTERM)
            assert await anyio.to_thread.run_sync(first.wait, 15) == 0, log.read_text()
        finally:
            if first.poll() is None:
                first.kill()
        stopped_at = len(receivers.webhook)
        assert stopped_at < 40, "stopped too late to show a restart"
        dead_sub = await js.subscribe("aicc-notify.dead.>")
        second = _notifier(config, log)
        try:

            def all_there() -> bool:
                return (
                    len(receivers.webhook) >= 40
                    and len(receivers.feishu) >= 1
                    and len(receivers.wecom) >= 1
                    and len(receivers.dingtalk) >= 2
                )

            await wait_until(all_there, timeout=20)
            msg = await dead_sub.next_msg(timeout=10)
            letter = msgspec.json.decode(msg.data, type=DeadLetter)
            await anyio.sleep(1.5)  # anything doubled would have arrived by now

            assert (await js.stream_info("AICC_NOTIFY_DEAD")).state.messages == 1
            info = await js.consumer_info("AICC", "aicc-notify")
            assert info.num_ack_pending == 0 and info.num_pending == 0
        finally:
            second.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(second.wait, 15)
        await nc.close()
    await runner.cleanup()

    ids = Counter(e["event_id"] for body in receivers.webhook for e in body["events"])
    assert ids == Counter({f"new-{i}": 1 for i in range(40)}), "missed or doubled across the restart"
    assert all(body["count"] == 1 and body["rule"] == "new-tasks" for body in receivers.webhook)
    # 500 calls in arrears are one message with the count; no_answer is not a line-level failure
    assert len(receivers.feishu) == 1 and receivers.feishu[0].startswith("[byrobot/acme] 500 calls failed")
    assert sorted(receivers.dingtalk) == [
        "[tencent-ccc/acme] task campaign 0 (t0) is now failed (vendor status 4, was running)",
        "[tencent-ccc/acme] task campaign 1 (t1) is now paused_by_system (vendor status 6, was running)",
    ]
    # episode 1 recovered before N minutes (although it was read after the N minutes had passed on
    # the wall clock for the first notifier): only episode 2 is notified
    assert len(receivers.wecom) == 1 and "degraded for over 0.1 min: throttled" in receivers.wecom[0]
    assert receivers.refused == Counter()
    assert letter.rule == "vanished" and letter.attempts == 3 and letter.error == "HTTP 503"
    assert [e.event_id for e in letter.events] == ["gone-1"] and receivers.failing_calls == 3
    assert "tok" not in log.read_text() and DING_SECRET not in log.read_text()


def test_subject_filters_follow_nats_wildcards() -> None:
    assert subject_matches("aicc.>", "aicc.byrobot.acme.call-finished")
    assert subject_matches("aicc.*.acme.*", "aicc.byrobot.acme.call-finished")
    assert not subject_matches("aicc.*.acme", "aicc.byrobot.acme.call-finished")
    assert not subject_matches("aicc.>", "aicc")
    assert not subject_matches("aicc.byrobot.>", "aicc.tencent-ccc.acme.task-appeared")


def test_a_template_is_filled_from_the_event_and_its_group() -> None:
    config = parse_notify_config(
        {
            "targets": {"t": {"kind": "webhook", "url": "http://127.0.0.1:1/x"}},
            "notify": [{"name": "r", "target": "t", "preset": "line-failures"}],
        }
    )
    calls = [e for e in _events() if isinstance(e, CallFinished)][:3]
    text = render(config.notify[0], calls)
    assert text.startswith("[byrobot/acme] 3 calls failed with no_answer") and "e.g. task 77" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"notify": [{"name": "r", "target": "nope"}]}, "notify[0].target: no target named 'nope'"),
        (
            {"notify": [{"name": "r", "target": "t", "typo": 1}]},
            "notify[0]: Object contains unknown field `typo`",
        ),
        (
            {"notify": [{"name": "r", "target": "t", "states": ["broken"]}]},
            "notify[0].states[0]: Invalid enum value",
        ),
        ({"notify": [{"name": "r", "target": "t", "template": "{nope}"}]}, "unknown placeholder {nope}"),
        (
            {"notify": [{"name": "r", "target": "t", "types": ["call-done"]}]},
            "unknown event type 'call-done'",
        ),
        ({"notify": [{"name": "r", "target": "t", "preset": "nope"}]}, "notify[0].preset: unknown preset"),
        (
            {"notify": [{"name": "r", "target": "t", "group_by": ["nope"]}]},
            "group_by: 'nope' is not an event",
        ),
        ({"notify": []}, "at least one [[notify]] rule"),
        ({"notify": [{"name": "r", "target": "t", "initial_inventory": False}]}, "only with types"),
        (
            {"notify": [{"name": "r", "target": "t", "kinds": ["campaign"]}]},
            "notify[0].kinds[0]: Invalid enum",
        ),
        ({"targets": {"t": {"kind": "sms", "url": "x"}}}, "targets.t.kind: Invalid enum value 'sms'"),
    ],
)
def test_bad_rules_are_named_by_file_and_field(change: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {
        "targets": {"t": {"kind": "webhook", "url": "http://127.0.0.1:1/x"}},
        "notify": [{"name": "r", "target": "t"}],
        **change,
    }
    with pytest.raises(ConfigError) as caught:
        parse_notify_config(data, path="n.toml")
    assert message in str(caught.value) and str(caught.value).startswith("n.toml: ")


def test_cli_exits_2_on_a_bad_notify_config_and_keeps_secrets_out_of_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from poller.cli import EXIT_CONFIG, main

    config = tmp_path / "n.toml"
    config.write_text(
        '[targets.t]\nkind = "dingtalk"\nurl = "ftp://token-abc"\n[[notify]]\nname = "r"\ntarget = "t"\n'
    )
    assert main(["notify", "--config", str(config)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "targets.t.url: expected an http" in err and "token-abc" not in err


def test_a_group_is_ready_at_the_end_of_its_window_or_when_full() -> None:
    from poller.tools.notify.notifier import _Held, _RuleWorker

    config = parse_notify_config(
        {
            "targets": {"t": {"kind": "webhook", "url": "http://127.0.0.1:1/x"}},
            "notify": [{"name": "r", "target": "t", "preset": "line-failures", "group_max_events": 100}],
        }
    )
    rule = config.notify[0]
    worker = _RuleWorker(rule, config.targets["t"], None)  # type: ignore[arg-type]
    calls = [
        e for e in _events() if isinstance(e, CallFinished) and e.outcome is CallOutcome.CALLER_IN_ARREARS
    ]
    for call in calls[:99]:
        assert worker.offer(_Held(None), "aicc.byrobot.acme.call-finished", "s", call)
    assert worker._ready() is None  # a 300 s window, 99 events: still collecting
    worker.offer(_Held(None), "aicc.byrobot.acme.call-finished", "s", calls[99])
    assert worker._ready() == ("byrobot", "acme", "caller_in_arrears")
    assert not worker.offer(_Held(None), "other.subject", "s", calls[0])


@pytest.mark.slow
async def test_a_killed_notifier_misses_nothing_and_repeats_at_most_the_message_in_flight(
    tmp_path: Path,
) -> None:
    receivers = Receivers()
    runner = web.AppRunner(receivers.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    with NatsServer(store_dir=str(tmp_path / "js")) as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_infrastructure(js, NatsConfig(url=server.url))
        config = tmp_path / "notify.toml"
        config.write_text(_config(server.url, f"http://127.0.0.1:{port}"))
        log = tmp_path / "notify.log"
        await _publish(js, [e for e in _events() if isinstance(e, TaskAppeared)][:30])
        first = _notifier(config, log)
        try:
            await wait_until(lambda: len(receivers.webhook) >= 8, timeout=15)
        finally:
            first.kill()  # SIGKILL: no nak, no flush; unacked events come back after ack_wait (2 s)
            await anyio.to_thread.run_sync(first.wait, 15)
        assert len(receivers.webhook) < 30, "killed too late to show a restart"
        second = _notifier(config, log)

        def all_seen() -> bool:
            return len({e["event_id"] for body in receivers.webhook for e in body["events"]}) == 30

        try:
            await wait_until(all_seen, timeout=20)
            await anyio.sleep(1.0)
        finally:
            second.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(second.wait, 15)
        await nc.close()
    await runner.cleanup()
    ids = Counter(e["event_id"] for body in receivers.webhook for e in body["events"])
    assert set(ids) == {f"new-{i}" for i in range(30)}
    # one message per rule is in flight at a time: only it can have been taken but not acked
    assert sum(ids.values()) - len(ids) <= 1, ids.most_common(3)


async def test_a_notifier_started_before_the_poller_waits_for_the_stream(nats_server: NatsServer) -> None:
    from poller.tools.notify import Notifier

    receivers = Receivers()
    runner = web.AppRunner(receivers.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = parse_notify_config(tomllib.loads(_config(nats_server.url, f"http://127.0.0.1:{port}")))
    notifier = Notifier(config)
    nc = await nats.connect(nats_server.url)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run)
            await anyio.sleep(0.5)
            assert not notifier.started.is_set()  # no stream yet: waiting, not crashed
            js = nc.jetstream()
            await ensure_infrastructure(js, NatsConfig(url=nats_server.url))
            await _publish(js, [e for e in _events() if isinstance(e, TaskAppeared)][:1])
            await wait_until(lambda: len(receivers.webhook) == 1, timeout=10)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
        await runner.cleanup()
    assert receivers.webhook[0]["events"][0]["event_id"] == "new-0"
