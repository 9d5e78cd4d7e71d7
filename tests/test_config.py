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


# -- strict decoding: every field has a range, unknown keys fail (issue 12 item 7) ------------------
_BASE_SOURCES = {
    "tencent-ccc": 'secret_id = "AKIDx"\nsecret_key = { env = "STRICT_SECRET" }\nsdk_app_ids = [1400000001]',
    "alibaba-outboundbot": (
        'access_key_id = "LTAIx"\naccess_key_secret = { env = "STRICT_SECRET" }\n'
        'instance_id = "inst"\njob_group_ids = ["g1"]'
    ),
    "alibaba-aiccs": 'access_key_id = "LTAIx"\naccess_key_secret = { env = "STRICT_SECRET" }',
    "byrobot": 'company_id = 7\napp_key = "k"\napp_secret = { env = "STRICT_SECRET" }',
    "huawei-aicc": 'client_id = "c"\nclient_secret = { env = "STRICT_SECRET" }\ntask_ids = ["t1"]',
}


def strict_case(top: str = "", vendor: str = "tencent-ccc", source: str = "") -> str:
    """A valid one-source config with ``top`` lines before the tables and ``source`` lines in the source."""
    return (
        f'{top}\n[nats]\nurl = "nats://127.0.0.1:1"\n'
        f'[[sources]]\nvendor = "{vendor}"\naccount = "acme"\n{_BASE_SOURCES[vendor]}\n{source}\n'
    )


def nats_case(*lines: str) -> str:
    """The valid config with ``lines`` added to its [nats] table."""
    return strict_case().replace(
        'url = "nats://127.0.0.1:1"', "\n".join(['url = "nats://127.0.0.1:1"', *lines])
    )


def tencent_case(sdk_app_ids: str) -> str:
    return strict_case().replace("sdk_app_ids = [1400000001]", f"sdk_app_ids = {sdk_app_ids}")


_TENCENT_PUSH = (
    '[push]\nenabled = true\n[[push.receivers]]\nvendor = "tencent-ccc"\naccount = "acme"\n'
    'username = "u"\npassword = { env = "STRICT_SECRET" }'
)

#: (config text, the field the error must name); one per class, every numeric field, every vendor
BAD_CONFIGS: list[tuple[str, str]] = [
    (strict_case(top="shutdown_grase = 3"), "shutdown_grase"),
    (strict_case(top='[[source]]\nvendor = "tencent-ccc"'), "source"),
    (strict_case(top="[x]\ny = 1"), "x"),
    (strict_case(top="shutdown_grace = -5"), "shutdown_grace"),
    (strict_case(top="[http]\nport = 70000"), "http.port"),
    (strict_case(top="[http]\nport = -1"), "http.port"),
    (strict_case(top="[shard]\ncount = 0"), "shard.count"),
    (strict_case(top='[privacy]\npersonal_data = "hash"'), "privacy.hash_salt"),
    (strict_case(top='[logging]\nlevel = "LOUD"'), "logging.level"),
    (strict_case(source="poll_interval = -1"), "sources[0].poll_interval"),
    (strict_case(source="poll_interval = 0"), "sources[0].poll_interval"),
    (strict_case(source="request_timeout = 0"), "sources[0].request_timeout"),
    (strict_case(source="retries = -1"), "sources[0].retries"),
    (strict_case(source="failure_backoff = 0"), "sources[0].failure_backoff"),
    (strict_case(source="rate_limit_margin = 2"), "sources[0].rate_limit_margin"),
    (strict_case(source="rate_limits = { DescribeAutoCalloutTasks = 0 }"), "sources[0].rate_limits"),
    (strict_case(source="pol_interval = 1"), "pol_interval"),
    (strict_case(source="page_size = 0"), "sources[0].page_size"),
    (strict_case(source="page_size = 101"), "sources[0].page_size"),
    (strict_case(source='endpoint = "ccc.tencentcloudapi.com"'), "sources[0].endpoint"),
    (tencent_case("[]"), "sources[0].sdk_app_ids"),
    (tencent_case("[0]"), "sources[0].sdk_app_ids"),
    (tencent_case("[1400000001, 1400000001]"), "sources[0].sdk_app_ids"),
    (strict_case(vendor="alibaba-outboundbot", source="page_size = 0"), "sources[0].page_size"),
    (strict_case(vendor="alibaba-outboundbot").replace('["g1"]', "[]"), "sources[0].job_group_ids"),
    (strict_case(vendor="alibaba-outboundbot").replace('["g1"]', '[""]'), "sources[0].job_group_ids"),
    (strict_case(vendor="alibaba-aiccs", source="page_size = 1001"), "sources[0].page_size"),
    (strict_case(vendor="alibaba-aiccs", source='endpoint = "not a url"'), "sources[0].endpoint"),
    (strict_case(vendor="byrobot").replace("company_id = 7", "company_id = 0"), "sources[0].company_id"),
    (strict_case(vendor="byrobot", source="call_page_size = 51"), "sources[0].call_page_size"),
    (strict_case(vendor="byrobot", source="detail_interval = -1"), "sources[0].detail_interval"),
    (strict_case(vendor="byrobot", source="utc_offset_minutes = 100000"), "sources[0].utc_offset_minutes"),
    (strict_case(vendor="huawei-aicc").replace('client_id = "c"', 'client_id = ""'), "sources[0].client_id"),
    (strict_case(vendor="huawei-aicc", source="max_concurrency = 0"), "sources[0].max_concurrency"),
    (strict_case(vendor="huawei-aicc", source="terminal_detail_interval = -1"), "terminal_detail_interval"),
    (strict_case(vendor="huawei-aicc", source="token_refresh_at = 0"), "sources[0].token_refresh_at"),
    (strict_case().replace('"nats://127.0.0.1:1"', '"localhost:4222"'), "nats.url"),
    (strict_case().replace('"nats://127.0.0.1:1"', '"nats://a:1, nats://b:2"'), "nats.url"),
    (nats_case("duplicate_window = 900000", "max_age_days = 1"), "nats.duplicate_window"),
    # a pushed Tencent record is published only once polling its calls tells the task
    (strict_case(top=_TENCENT_PUSH, source="calls = false"), "push.receivers[0]"),
    (strict_case(top=_TENCENT_PUSH, source="enabled = false"), "push.receivers[0]"),
]
BAD_CONFIGS += [
    (nats_case(f"{field} = {value}"), f"nats.{field}")
    for field, value in (
        ("duplicate_window", "-5"),
        ("replicas", "0"),
        ("replicas", "6"),
        ("ack_timeout", "0"),
        ("max_age_days", "0"),
        ("stream", '"a.b"'),
        ("state_bucket", '"has space"'),
        ("subject_prefix", '"aicc.>"'),
    )
]


@pytest.mark.parametrize(("text", "field"), BAD_CONFIGS)
def test_every_bad_field_fails_check_config_and_run_with_exit_2_naming_it(
    text: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real entry point in-process (fast); the subprocess test below covers each class."""
    from poller.cli import EXIT_CONFIG, main

    monkeypatch.setenv("STRICT_SECRET", "s")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in (["check-config", str(path)], ["run", "--config", str(path)]):
        assert main(command) == EXIT_CONFIG, text
        err = capsys.readouterr().err
        assert f"config error: {path}: " in err and field in err, err
        assert "Traceback" not in err


def test_the_valid_cases_base_is_valid(tmp_path: Path) -> None:
    """Each bad case differs from a valid config by the one line it breaks."""
    for vendor in _BASE_SOURCES:
        path = tmp_path / f"{vendor}.toml"
        path.write_text(strict_case(vendor=vendor))
        assert load_config(path, env={"STRICT_SECRET": "s"}).sources[0].vendor == vendor
    path = tmp_path / "push.toml"
    path.write_text(strict_case(top=_TENCENT_PUSH))
    assert load_config(path, env={"STRICT_SECRET": "s"}).push.receivers[0].vendor == "tencent-ccc"
