"""The compose `notify` service runs `poller notify` on a config that decodes with the env it passes."""

from __future__ import annotations

import pytest

from poller.cli import build_parser
from poller.errors import ConfigError
from poller.tools.notify import load_notify_config
from tests.deploy.test_deploy import DEPLOY, compose, env_refs, interpolate

EXAMPLE_ENV = {
    "DINGTALK_ROBOT_URL": "https://oapi.dingtalk.com/robot/send?access_token=t",
    "DINGTALK_ROBOT_SECRET": "SECx",
    "FEISHU_BOT_URL": "https://open.feishu.cn/open-apis/bot/v2/hook/x",
    "FEISHU_BOT_SECRET": "y",
    "WECOM_ROBOT_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=z",
}


def _service() -> dict[str, object]:
    service: dict[str, object] = compose()["services"]["notify"]
    return service


def test_notify_runs_as_its_own_container_only_under_its_profile() -> None:
    services = compose()["services"]
    notify = _service()
    assert notify["profiles"] == ["notify"]
    assert services["poller"].get("profiles") is None
    command = notify["command"]
    assert isinstance(command, list)
    args = build_parser().parse_args(command)
    assert args.command == "notify"
    assert notify["depends_on"] == {"nats": {"condition": "service_healthy"}}
    assert notify["healthcheck"] == {"disable": True}  # the image's check asks the poller's port


def test_the_mounted_notify_config_decodes_with_the_env_compose_passes() -> None:
    import tomllib

    notify = _service()
    volumes = notify["volumes"]
    assert isinstance(volumes, list)
    (mount,) = [interpolate(v, {}).split(":") for v in volumes]
    command = notify["command"]
    assert isinstance(command, list) and mount[1] == command[command.index("--config") + 1]
    path = (DEPLOY / mount[0]).resolve()
    environment = notify["environment"]
    assert isinstance(environment, dict)
    passed = {key: interpolate(str(value), EXAMPLE_ENV) for key, value in environment.items()}
    for kind, name in env_refs(tomllib.loads(path.read_text())):
        assert kind == "env" and name in passed, f"{name} is not passed to the notify container"
    config = load_notify_config(str(path), env=passed)
    assert {r.preset for r in config.notify} == {"task-failed-by-system", "source-degraded", "line-failures"}
    assert config.nats.url == "nats://nats:4222" and "nats" in compose()["services"]
    # without the robot's URL the notifier says so and exits, it does not start half-configured
    unset = {key: interpolate(str(value), {}) for key, value in environment.items()}
    with pytest.raises(ConfigError, match=r"targets\.ops-dingtalk\.url: expected an http"):
        load_notify_config(str(path), env=unset)
