"""``poller tail``: checked flags, --since, --task, the caught-up marker and a quiet normal exit."""

from __future__ import annotations

import json
import os
import sys
from io import StringIO

import anyio
import msgspec
import nats
import pytest

from poller.cli import main
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer, free_port
from poller.tools.tail import tail, tail_subject
from schemas import Event, TaskAppeared, encoder
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000800


async def _tail_process(*args: str) -> tuple[int, str, str]:
    done = await anyio.run_process(
        [sys.executable, "-m", "poller.cli", "tail", *args], check=False, env=dict(os.environ)
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def _two_tasks_one_change(nats_server: NatsServer) -> tuple[str, str]:
    """A real poller publishes two task-appeared and one task-status-changed; returns the task ids."""
    sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    async with sim:
        first = sim.add_task(APP, state=0)
        second = sim.add_task(APP, state=0)
        config = make_config(nats_server.url, [tencent_source(sim, [APP])])
        async with running(config) as service:
            await polls_done(service, 1)
            sim.set_state(APP, first, 1)
            await polls_done(service, 2)
    return str(first), str(second)


async def test_a_typo_in_type_is_an_error_not_an_empty_wait() -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # checked before anything is connected
    code, out, err = await _tail_process("--server", nowhere, "--type", "call-finishd")
    assert code == 2 and out == ""
    assert "unknown --type 'call-finishd'; did you mean call-finished?" in err and "task-appeared" in err


def test_vendor_and_since_are_checked_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    assert main(["tail", "--server", nowhere, "--vendor", "tencent"]) == 2
    err = capsys.readouterr().err
    assert "unknown --vendor 'tencent'" in err and "tencent-ccc" in err
    for since in ("2 hours", "0s", "-1h", "99999999999d"):
        assert main(["tail", "--server", nowhere, f"--since={since}"]) == 2
        assert f"--since '{since}'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["tail", "--server", nowhere, "--since", "2h", "--from-start"])
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err
    # known names pass the check and get as far as connecting
    assert main(["tail", "--server", nowhere, "--type", "call-finished", "--vendor", "byrobot"]) == 1
    assert "cannot connect" in capsys.readouterr().err


async def test_from_start_says_caught_up_after_the_backlog_and_exits_quietly(nats_server: NatsServer) -> None:
    await _two_tasks_one_change(nats_server)
    backlog = len(await stream_events(nats_server.url))
    assert backlog == 3
    code, out, err = await _tail_process(
        "--server", nats_server.url, "--from-start", "--limit", str(backlog), "--json"
    )
    assert code == 0, err
    assert len(out.splitlines()) == backlog
    assert "tail: caught up (3 event(s) from the stream); following live" in err
    assert "disconnected" not in err, "a normal exit is not a lost connection"


async def test_caught_up_is_said_at_once_when_nothing_matches(nats_server: NatsServer) -> None:
    await _two_tasks_one_change(nats_server)
    status = StringIO()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: tail(
                nats_server.url,
                tail_subject("aicc", None, None, "source-recovered"),
                from_start=True,
                out=StringIO(),
                status=status,
            )
        )
        await wait_until(lambda: "caught up (0 event(s)" in status.getvalue(), timeout=10)
        tg.cancel_scope.cancel()


async def test_task_filter_shows_only_that_task(nats_server: NatsServer) -> None:
    first, second = await _two_tasks_one_change(nats_server)
    code, out, err = await _tail_process(
        "--server", nats_server.url, "--from-start", "--task", first, "--limit", "2", "--json"
    )
    assert code == 0, err
    shown = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["entity_id"]) for e in shown] == [
        ("task-appeared", first),
        ("task-status-changed", first),
    ]
    assert second not in out


async def test_since_starts_that_long_ago(nats_server: NatsServer) -> None:
    await _two_tasks_one_change(nats_server)
    old = await stream_events(nats_server.url)
    await anyio.sleep(2.5)
    appeared = next(e for e in old if isinstance(e, TaskAppeared))
    fresh = msgspec.structs.replace(appeared, event_id="fresh-" + appeared.event_id, entity_id="fresh")
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish("aicc.tencent-ccc.tc-main.task-appeared", encoder.encode(fresh))
    finally:
        await nc.close()
    code, out, err = await _tail_process(
        "--server", nats_server.url, "--since", "2s", "--limit", "1", "--json"
    )
    assert code == 0, err
    assert msgspec.json.decode(out.strip(), type=Event).event_id == fresh.event_id
    assert "from 2s ago" in err and "caught up (1 event(s)" in err
