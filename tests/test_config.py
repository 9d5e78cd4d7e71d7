"""The shipped example config is valid, and every documented default is what the code uses."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from poller.config import Config, load_config, parse_config
from poller.ops.configview import effective, inline_secrets, secret_values, to_toml
from poller.secrets import Secret
from poller.vendors import VENDORS

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "config.example.toml"
ENV = {
    "TENCENT_SECRET_KEY": "t",
    "ALIBABA_OUTBOUNDBOT_SECRET": "o",
    "ALIBABA_AICCS_SECRET": "a",
    "BYROBOT_APP_SECRET": "b",
}


def test_example_config_loads_with_every_vendor(tmp_path: Path) -> None:
    secret = tmp_path / "huawei_client_secret"
    secret.write_text("h\n")
    text = EXAMPLE.read_text().replace("/run/secrets/huawei_client_secret", str(secret))
    path = tmp_path / "example.toml"
    path.write_text(text)
    config = load_config(path, env=ENV)
    assert {s.vendor for s in config.sources} == set(VENDORS)
    assert config.nats.duplicate_window == 900.0 and config.shutdown_grace == 10.0
    huawei = next(s for s in config.sources if s.vendor == "huawei-aicc")
    assert huawei.client_secret.reveal() == "h"  # type: ignore[attr-defined]


def test_example_never_inlines_a_secret() -> None:
    for line in EXAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key.endswith(("secret", "secret_key", "password", "token")) and "=" in line:
            assert "{ env" in line or "{ file" in line, line


# -- one example per vendor (deploy/examples/<vendor>.toml) ------------------------------------------
EXAMPLES = EXAMPLE.parent / "examples"
_ENV_REF = re.compile(r'\{\s*env\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"\s*\}')
_FILE_REF = re.compile(r'\{\s*file\s*=\s*"([^"]+)"\s*\}')
_COMMENTED_KEY = re.compile(r"^#\s?([a-z_]+)\s*=\s*(.+)$")


def _load_example(path: Path, tmp_path: Path) -> tuple[Config, dict[str, str]]:
    """Load an example with made-up values for the secrets it references (env and files)."""
    text = path.read_text(encoding="utf-8")
    env = {name: f"example-secret-{name.lower()}" for name in _ENV_REF.findall(text)}
    for i, ref in enumerate(_FILE_REF.findall(text)):
        secret = tmp_path / f"secret{i}"
        secret.write_text(f"example-file-secret-{i}\n")
        text = text.replace(f'"{ref}"', json.dumps(str(secret)))
    copy = tmp_path / path.name
    copy.write_text(text, encoding="utf-8")
    return load_config(copy, env=env), env


def _commented_defaults(path: Path) -> dict[str, Any]:
    """``# key = value`` lines after ``[[sources]]``: the defaults the example documents."""
    text = path.read_text(encoding="utf-8")
    found: dict[str, Any] = {}
    for line in text[text.index("[[sources]]") :].splitlines():
        match = _COMMENTED_KEY.match(line)
        if match:
            found[match.group(1)] = tomllib.loads(f"v = {match.group(2)}")["v"]
    return found


def test_every_vendor_has_an_example() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.toml")} == set(VENDORS)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_vendor_example_loads_and_documents_every_field(vendor: str, tmp_path: Path) -> None:
    path = EXAMPLES / f"{vendor}.toml"
    config, env = _load_example(path, tmp_path)
    assert [s.vendor for s in config.sources] == [vendor]
    source = config.sources[0]
    text = path.read_text(encoding="utf-8")
    spec = VENDORS[vendor]
    fields = msgspec.inspect.type_info(spec.account_config)
    assert isinstance(fields, msgspec.inspect.StructType)
    documented = set(re.findall(r"^#?\s?([a-z_]+)\s*=", text, flags=re.MULTILINE))
    missing = {f.name for f in fields.fields} - documented
    assert not missing, f"{path.name} does not mention {sorted(missing)}"
    # every secret field is a reference, and it resolved to the value we put in the environment/file
    for name in source.__struct_fields__:
        value = getattr(source, name)
        if isinstance(value, Secret):
            assert value.source != "inline", f"{path.name}: {name} is inlined"
            assert value.reveal().startswith("example-")
    # commented keys show the code's defaults (rate_limits: the vendor's documented default limits)
    for key, shown in _commented_defaults(path).items():
        if key == "rate_limits":
            assert shown == dict(spec.apis), f"{path.name}: rate_limits"
            continue
        field = next(f for f in fields.fields if f.name == key)
        default = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
        if default is not None:  # an optional key with no default is shown with a sample value
            assert shown == default, f"{path.name}: {key} shows {shown!r}, the code uses {default!r}"
    assert not set(env.values()) & set(text.split())


def test_effective_config_round_trips_through_toml(tmp_path: Path) -> None:
    """What check-config prints is a valid config that loads to the same thing (secrets by reference)."""
    configs = [_load_example(EXAMPLE, tmp_path)] + [
        _load_example(p, tmp_path) for p in sorted(EXAMPLES.glob("*.toml"))
    ]
    for config, env in configs:
        text = to_toml(effective(config))
        for value in env.values():
            assert value not in text
        again = parse_config(tomllib.loads(text), path=str(tmp_path / "again.toml"), env=env)
        assert again == config


def test_inline_secrets_are_found_and_never_shown(tmp_path: Path) -> None:
    config = parse_config(
        {
            "nats": {"token": "inline-nats-token", "url": "nats://poller:inline-url-password@nats:4222"},
            "sources": [
                {
                    "vendor": "tencent-ccc",
                    "account": "a",
                    "secret_id": "AKIDx",
                    "secret_key": "inline-tencent-key",
                    "sdk_app_ids": [1],
                }
            ],
        },
        path=str(tmp_path / "c.toml"),
    )
    assert inline_secrets(config) == ["nats.token", "sources[0].secret_key"]
    shown = effective(config)
    assert shown["nats"]["token"] == shown["sources"][0]["secret_key"] == "<redacted>"
    assert shown["nats"]["url"] == "nats://poller:<redacted>@nats:4222"
    assert "inline-" not in to_toml(shown) + json.dumps(shown)
    assert sorted(secret_values(config)) == ["inline-nats-token", "inline-tencent-key"]
