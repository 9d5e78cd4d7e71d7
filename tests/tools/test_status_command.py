"""``poller status`` as a real process against a running poller's ops port."""

from __future__ import annotations

import os
import pty
import re
import sys

import anyio
import msgspec

from poller.ops.statuspage import StatusDocument
from poller.tools.natsserver import NatsServer, free_port
from poller.tools.table import display_width
from tests.ops.everyvendor import every_vendor

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


async def _status(*args: str, tty: bool = False) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "poller.cli", "status", *args]
    env = {**os.environ, "NO_COLOR": ""}
    if not tty:
        done = await anyio.run_process(command, check=False, env=env)
        return done.returncode, done.stdout.decode(), done.stderr.decode()
    leader, follower = pty.openpty()
    try:
        done = await anyio.run_process(command, check=False, env=env, stdout=follower)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        return done.returncode, b"".join(chunks).decode(), done.stderr.decode()
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def _column_of(line: str, word: str) -> int:
    return display_width(line[: line.index(word)])


async def test_status_lists_every_source_aligned_and_colours_only_a_terminal(nats_server: NatsServer) -> None:
    async with every_vendor(nats_server) as (service, _):
        url = f"http://127.0.0.1:{service.http_port}"
        code, out, err = await _status("--url", url)
        assert code == 0, err
        assert "\x1b[" not in out, "no colour into a pipe"
        lines = out.splitlines()
        header = next(line for line in lines if line.startswith("SOURCE"))
        names = {_name(s) for s in service.statuses.values()}
        rows = [line for line in lines if line.split(" ")[0] in names and " watches: " not in line]
        assert len(rows) == len(service.statuses)
        # every row's health, and its last poll, start in the header's columns
        for row in rows:
            assert _column_of(row, " ok ") + 1 == _column_of(header, "HEALTH"), row
        assert "huawei-aicc/demo watches:" in out and "NATS" in out and "recent events" in out

        code, tty_out, err = await _status("--url", url, tty=True)
        assert code == 0, err
        assert "\x1b[32mok\x1b[0m" in tty_out
        plain = _ANSI.sub("", tty_out).replace("\r\n", "\n")
        # the same columns (their widths follow the values, which moved on since the first call)
        assert plain.splitlines()[3:] and [
            line.split() for line in plain.splitlines() if line.startswith("SOURCE")
        ] == [header.split()]

        code, as_json, err = await _status("--url", url + "/status.json", "--json")
        assert code == 0, err
        doc = msgspec.json.decode(as_json.encode(), type=StatusDocument)
        assert {row.key for row in doc.sources} == set(service.statuses)


def _name(status: object) -> str:
    source = status.source  # type: ignore[attr-defined]
    name = f"{source.vendor}/{source.account}"
    return f"{name}/{source.scope}" if source.scope else name


async def test_status_of_an_unreachable_poller_says_so_and_exits_1() -> None:
    code, out, err = await _status("--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and out == ""
    assert err.startswith("status: cannot reach http://127.0.0.1:") and "Traceback" not in err
