"""The shipped example config is valid, and every documented default is what the code uses."""

from __future__ import annotations

from pathlib import Path

from poller.config import load_config
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
