"""``nats.creds_file``: read and checked when the configuration is loaded (a file the NATS client
cannot use fails late and unclearly), shown by its reference, its seed a secret the redactor knows."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nkeys
import pytest

from poller.cli import EXIT_CONFIG, EXIT_OK, main
from poller.config import CredsFile, load_config, parse_config
from poller.ops.configview import effective, secret_values, to_toml
from poller.pipeline.redact import Redactor
from tests.natsjwt import Key, Operator, user_creds
from tests.test_config import nats_case

ENV = {"STRICT_SECRET": "s"}


def _seed_of(creds: str) -> str:
    lines = creds.splitlines()
    return lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1]


def test_a_creds_file_is_read_when_loaded_and_its_seed_is_a_secret(tmp_path: Path) -> None:
    text = user_creds(Operator().account)
    seed = _seed_of(text)
    (tmp_path / "nats.creds").write_text(text)
    path = tmp_path / "c.toml"
    path.write_text(nats_case('creds_file = "nats.creds"'))
    config = load_config(path, env=ENV)
    creds = config.nats.creds_file
    assert isinstance(creds, CredsFile) and creds.path == str(tmp_path / "nats.creds")
    assert seed in secret_values(config)
    assert seed not in Redactor(secret_values(config))(f"nats: signing with {seed} failed")
    shown = to_toml(effective(config))
    assert 'creds_file = "nats.creds"' in shown and seed not in shown and seed not in repr(config)
    assert parse_config(tomllib.loads(shown), path=str(path), env=ENV) == config


def _other_users_seed(account: Key) -> str:
    """A creds file whose JWT names one user and whose seed is another's."""
    text = user_creds(account)
    return text.replace(_seed_of(text), Key(nkeys.PREFIX_BYTE_USER).seed.decode())


def _account_seed(account: Key) -> str:
    text = user_creds(account)
    return text.replace(_seed_of(text), account.seed.decode())


BAD_FILES = {
    "missing": (None, "cannot read credentials file"),
    "not creds": (lambda _account: "user = poller\n", "is not a NATS credentials file"),
    "no seed": (lambda a: user_creds(a).split("****")[0], "is not a NATS credentials file"),
    "another user's seed": (_other_users_seed, "the seed is not the key of the user the JWT names"),
    "an account seed": (_account_seed, "does not hold a user NKey seed"),
    "no JWT": (lambda a: user_creds(a).replace(".", "", 2), "the user JWT block is not a readable JWT"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_an_unusable_creds_file_fails_check_config_and_run_with_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write, message = BAD_FILES[case]
    account = Operator().account
    text = write(account) if write is not None else ""
    if write is not None:
        (tmp_path / "nats.creds").write_text(text)
    monkeypatch.setenv("STRICT_SECRET", "s")
    path = tmp_path / "bad.toml"
    path.write_text(nats_case('creds_file = "nats.creds"'))
    for command in (["check-config", str(path)], ["run", "--config", str(path)]):
        assert main(command) == EXIT_CONFIG, case
        err = capsys.readouterr().err
        assert f"config error: {path}: nats.creds_file: " in err and message in err, err
        assert "Traceback" not in err
        if write is not None:
            assert _seed_of(user_creds(account)) not in err
            for line in text.splitlines():
                if len(line) > 40:  # a seed or a JWT, whichever the file holds
                    assert line not in err


def test_without_secrets_only_the_path_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CI lints a deployment's config where the deployment's files are not."""
    path = tmp_path / "c.toml"
    path.write_text(nats_case('creds_file = "/run/secrets/nats.creds"'))
    assert main(["check-config", "--no-secrets", str(path)]) == EXIT_OK
    assert 'creds_file = "/run/secrets/nats.creds"' in capsys.readouterr().out
