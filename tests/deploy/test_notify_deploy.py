"""Compose and k8s run `poller notify` as its own container, on a config that decodes with their env."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import PurePosixPath

import pytest

from poller.cli import build_parser
from poller.errors import ConfigError
from poller.tools.notify import load_notify_config
from tests.deploy.test_deploy import DEPLOY, by_name, compose, env_refs, interpolate, k8s_resources

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
    assert {r.preset for r in config.notify} == {
        "task-failed-by-system",
        "new-task",
        "source-degraded",
        "line-failures",
    }
    assert config.nats.url == "nats://nats:4222" and "nats" in compose()["services"]
    # without the robot's URL the notifier says so and exits, it does not start half-configured
    unset = {key: interpolate(str(value), {}) for key, value in environment.items()}
    with pytest.raises(ConfigError, match=r"targets\.ops-dingtalk\.url: expected an http"):
        load_notify_config(str(path), env=unset)


def test_k8s_notify_deployment_runs_one_notifier_on_its_configmap_and_secret() -> None:
    docs = k8s_resources()
    deployment = by_name(docs, "Deployment", "aicc-notify")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert build_parser().parse_args(args).command == "notify"
    config_path = PurePosixPath(args[args.index("--config") + 1])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    configmap = by_name(docs, "ConfigMap", mounts[str(config_path.parent)]["configMap"]["name"])
    text = configmap["data"][config_path.name]
    secrets = [by_name(docs, "Secret", s["secretRef"]["name"]) for s in container["envFrom"]]
    keys = {key for s in secrets for key in s["stringData"]}
    for kind, name in env_refs(tomllib.loads(text)):
        assert kind == "env" and name in keys, f"{name} is in no Secret the notifier imports"
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as handle:
        handle.write(text)
        handle.flush()
        config = load_notify_config(handle.name, env=EXAMPLE_ENV)
    assert config.nats.url == "nats://nats:4222"
    assert pod["terminationGracePeriodSeconds"] > max(t.timeout_seconds for t in config.targets.values()) + 5
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
