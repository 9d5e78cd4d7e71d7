"""NATS decentralized auth on a real nats-server in operator mode: ``nats.creds_file`` connects the
poller and its events reach JetStream; a file for a user the server does not trust, or one whose
JWT the account revoked, ends the start with one clear line and the exit code of refused credentials,
as a wrong password does."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import anyio
import msgspec
import nats
import nkeys
import pytest

from poller.tools.natsserver import NatsServer
from schemas import Event
from tests.natsjwt import Key, Operator, user_creds
from tests.runtime.processes import Poller, simulator, write_config
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY


def _seed_of(creds: str) -> str:
    lines = creds.splitlines()
    return lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1]


async def _first_event(url: str, creds: Path, timeout: float = 20.0) -> Event:
    """The stream's first event, read back as the same user."""
    nc = await nats.connect(url, user_credentials=str(creds))
    try:
        js = nc.jetstream()
        with anyio.fail_after(timeout):
            while True:
                try:
                    info = await js.stream_info("AICC")
                except nats.js.errors.NotFoundError:
                    info = None
                if info is not None and info.state.messages:
                    msg = await js.get_msg("AICC", info.state.first_seq)
                    return msgspec.json.decode(msg.data, type=Event)
                await anyio.sleep(0.2)
    finally:
        await nc.close()


def test_a_creds_file_connects_the_poller_and_its_events_are_published(tmp_path: Path) -> None:
    operator = Operator()
    text = user_creds(operator.account)
    (tmp_path / "poller.creds").write_text(text)
    with NatsServer(config=operator.server_config()) as server, simulator("tencent-ccc") as sources:
        # relative to the configuration's folder, not to where the poller was started
        config = write_config(
            tmp_path / "p.toml", server.url, sources, nats_extra='creds_file = "poller.creds"'
        )
        poller = Poller(config)
        try:
            poller.wait_for("poller started")
            event = anyio.run(_first_event, server.url, tmp_path / "poller.creds")
            poller.signal(signal.SIGTERM)
            code = poller.wait(20)
        finally:
            poller.kill()
    assert code == 0, poller.stderr[-2000:]
    assert event.vendor == "tencent-ccc"
    assert _seed_of(text) not in poller.stderr + poller.stdout


def _untrusted() -> tuple[Operator, str]:
    """A user of an account the server was never told about."""
    return Operator(), user_creds(Key(nkeys.PREFIX_BYTE_ACCOUNT))


def _revoked() -> tuple[Operator, str]:
    """A user whose JWT was issued before the account revoked that user."""
    user = Key(nkeys.PREFIX_BYTE_USER)
    issued = int(time.time()) - 60
    operator = Operator(revoked={user.public: issued + 30})
    return operator, user_creds(operator.account, user=user, issued=issued)


@pytest.mark.parametrize("case", [_untrusted, _revoked], ids=["untrusted", "revoked"])
def test_a_refused_creds_file_exits_3_with_one_clear_line(case: object, tmp_path: Path) -> None:
    operator, text = case()  # type: ignore[operator]
    creds = tmp_path / "refused.creds"
    creds.write_text(text)
    source = {
        "vendor": "tencent-ccc",
        "account": "auth",
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "sdk_app_ids": [1400000910],
        "endpoint": "http://127.0.0.1:9",
    }
    with NatsServer(config=operator.server_config()) as server:
        config = write_config(tmp_path / "p.toml", server.url, [source], nats_extra=f'creds_file = "{creds}"')
        poller = Poller(config)
        try:
            code = poller.wait(20)
        finally:
            poller.kill()
    assert code == 3, poller.stderr[-2000:]
    lines = [json.loads(line) for line in poller.err]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1 and "refused the credentials" in errors[0]["message"], poller.stderr
    assert "nats.creds_file" in errors[0]["message"]
    assert "Traceback" not in poller.stderr and _seed_of(text) not in poller.stderr
