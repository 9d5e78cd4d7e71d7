"""deploy/ agrees with the code: no container engine or cluster runs here, so check what can be checked.

The image's command is the console script with the config path that compose and Kubernetes mount;
those configs exist and decode with the env they are given; ports, env names, secrets and replica
counts agree across files; every metric an alert or a dashboard panel asks for is one the poller
exposes; promtool (when installed) checks and unit-tests the rules.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poller.cli import build_parser
from poller.config import Config, HttpConfig, load_config, parse_config
from poller.ops.metrics import Metrics
from poller.simulators.registry import demo_setups
from poller.vendors.base import AccountConfig
from schemas import DegradeReason

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
K8S_TRY_OUT = DEPLOY / "k8s-try-out"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "aicc-poller.json"
#: the seed the compose simulators run with, so the demo credentials line up
DEMO_SEED = 7
#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance", "pod", "namespace"}
#: metrics Prometheus itself generates for a scrape target
PROMETHEUS_METRICS = {"up": set[str]()}
#: `poller run` drains for shutdown_grace, then takes up to this long to flush the NATS connection
NATS_DRAIN_SECONDS = 5


# -- helpers -------------------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    out = []
    for line in joined:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def instruction(stage: list[tuple[str, str]], name: str) -> str:
    values = [rest for word, rest in stage if word == name]
    assert len(values) == 1, f"expected one {name} in the final stage, found {len(values)}"
    return values[0]


def image_command() -> list[str]:
    entrypoint = json.loads(instruction(final_stage(), "ENTRYPOINT"))
    cmd = json.loads(instruction(final_stage(), "CMD"))
    assert isinstance(entrypoint, list) and isinstance(cmd, list), "use the exec (JSON) form"
    return [*entrypoint, *cmd]


def config_path_in_image() -> str:
    args = build_parser().parse_args(image_command()[1:])
    assert args.command == "run"
    path: str = args.config
    return path


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` / ``${VAR-default}`` with the given environment."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", one, text)


def env_refs(node: Any) -> Iterator[tuple[str, str]]:
    """Every secret reference in decoded TOML: ("env", NAME) or ("file", PATH)."""
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in ("env", "file"):
            ((kind, ref),) = node.items()
            yield kind, ref
            return
        for value in node.values():
            yield from env_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from env_refs(value)


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def k8s_resources() -> list[dict[str, Any]]:
    """What ``kubectl apply -k deploy/k8s-try-out`` applies: deploy/k8s (its resources and the
    ConfigMap its generator makes) and the placeholder Secrets."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), f"kustomization lists missing {name}"
        docs.extend(load_yaml_documents(K8S / name))
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(f).name: (K8S / f).read_text() for f in generator["files"]}
        docs.append({"kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    try_out = yaml.safe_load((K8S_TRY_OUT / "kustomization.yaml").read_text())
    assert "../k8s" in try_out["resources"]
    for name in try_out["resources"]:
        if name != "../k8s":
            docs.extend(load_yaml_documents(K8S_TRY_OUT / name))
    return docs


def one_of(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind} named {name}"
    return found[0]


def exposed_metrics() -> dict[str, set[str]]:
    """Sample names and their label names as a real ``Metrics()`` registry exposes them."""
    metrics = Metrics()
    for metric in vars(metrics).values():
        if not isinstance(metric, Counter | Gauge | Histogram):
            continue
        names = metric._labelnames
        child = metric.labels(*(f"x{i}" for i in range(len(names)))) if names else metric
        if isinstance(child, Counter):
            child.inc()
        elif isinstance(child, Gauge):
            child.set(1)
        else:
            child.observe(1)
    exposed: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    return exposed


_PROMQL_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      |(?P<range>\[[^\]]*\])
      |(?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))
      |(?P<number>\b\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)?\b)
      |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?
       (?P<matchers>\{[^}]*\})?\s*(?P<call>\()?
      |(?P<bare_matchers>\{[^}]*\})""",
    re.VERBOSE,
)
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}


def promql_selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, {label: value}) of every vector selector in a PromQL expression."""
    found = []
    for match in _PROMQL_TOKEN.finditer(expr):
        if match.group("bare_matchers"):
            raise AssertionError(f"selector without a metric name in {expr!r}")
        ident = match.group("ident")
        if not ident or match.group("call") or ident in _PROMQL_WORDS:
            continue
        matchers = dict(re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', match.group("matchers") or ""))
        found.append((ident, matchers))
    return found


def check_selectors(expr: str, exposed: dict[str, set[str]], where: str) -> set[str]:
    known = {**exposed, **PROMETHEUS_METRICS}
    selectors = promql_selectors(expr)
    assert selectors, f"{where}: no metric in {expr!r}"
    for name, matchers in selectors:
        assert name in known, f"{where}: {name} is not exposed by poller/ops/metrics.py"
        unknown = set(matchers) - known[name] - TARGET_LABELS
        assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"
        if "reason" in matchers:
            assert matchers["reason"] in {r.value for r in DegradeReason}, f"{where}: unknown reason"
    return {name for name, _ in selectors}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) of every query in the dashboard, Grafana variables substituted."""
    board = json.loads(DASHBOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r}", target["expr"]))
    return [(where, expr.replace("$__rate_interval", "5m").replace("$vendor", ".*")) for where, expr in out]


# -- the image -----------------------------------------------------------------------------------------
def test_image_runs_the_console_script_on_the_mounted_config() -> None:
    command = image_command()
    assert command[0] == "poller"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["poller"] == "poller.cli:main"
    assert command[1:] == ["run", "--config", config_path_in_image()]
    assert PurePosixPath(config_path_in_image()).is_absolute()

    helped = subprocess.run(
        [sys.executable, "-m", "poller.cli", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    assert "--config" in helped.stdout


def test_image_is_multi_stage_slim_non_root_with_a_python_healthcheck() -> None:
    instructions = dockerfile()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", (DEPLOY / "Dockerfile").read_text())
    assert base and "slim" in base.group(1)
    assert froms[-1] == "${PYTHON_IMAGE}"
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"

    stage = final_stage()
    user = instruction(stage, "USER").split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric non-root USER (runAsNonRoot can verify it)"
    port = HttpConfig().port
    assert instruction(stage, "EXPOSE") == str(port)

    healthcheck = instruction(stage, "HEALTHCHECK")
    check = json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert check[:2] == ["python", "-c"]
    compile(check[2], "<healthcheck>", "exec")
    assert f"http://127.0.0.1:{port}/healthz" in check[2]
    assert duration_seconds(re.search(r"--timeout=(\S+)", healthcheck).group(1)) > 3  # type: ignore[union-attr]


# -- compose -------------------------------------------------------------------------------------------
def compose_poller_config() -> tuple[Config, dict[str, Any], dict[str, str]]:
    poller = compose()["services"]["poller"]
    env = {key: interpolate(str(value), {}) for key, value in poller.get("environment", {}).items()}
    mounts = [interpolate(v, {}).split(":") for v in poller["volumes"]]
    sources = [src for src, target, *_ in mounts if target == config_path_in_image()]
    assert len(sources) == 1, "the poller service mounts the config where the image reads it"
    path = (DEPLOY / sources[0]).resolve()
    assert path.is_file(), f"{path} does not exist"
    return load_config(path, env=env), tomllib.loads(path.read_text()), env


def test_compose_poller_config_decodes_and_matches_ports_env_and_nats() -> None:
    services = compose()["services"]
    poller = services["poller"]
    assert poller.get("command", image_command()[1:]) == image_command()[1:]
    assert poller["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / poller["build"]["context"] / poller["build"]["dockerfile"]).is_file()

    config, raw, env = compose_poller_config()
    assert config.sources, "the compose config polls something"
    published = {str(p).rsplit(":", 1)[-1] for p in poller["ports"]}
    assert str(config.http.port) in published
    for kind, name in env_refs(raw):
        assert kind == "env" and name in env, f"{kind} {name} is not passed to the poller container"

    nats_url = urlsplit(config.nats.url)
    assert nats_url.hostname in services and nats_url.port == 4222
    nats = services[nats_url.hostname]
    command = nats["command"]
    assert "--jetstream" in command
    store = command[command.index("--store_dir") + 1]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in nats["volumes"]}
    assert volumes.get(store) in compose()["volumes"], "JetStream stores on a named volume"
    assert poller["depends_on"][nats_url.hostname]["condition"] == "service_healthy"
    assert duration_seconds(poller["stop_grace_period"]) > config.shutdown_grace + NATS_DRAIN_SECONDS


def test_compose_demo_profile_runs_a_simulator_for_every_source_with_the_demo_credentials() -> None:
    services = compose()["services"]
    config, _, _ = compose_poller_config()
    setups = demo_setups(DEMO_SEED)
    demo = {name: s for name, s in services.items() if "demo" in s.get("profiles", [])}
    assert all("demo" not in services[name].get("profiles", []) for name in ("nats", "poller"))
    assert any("aicc.>" in service.get("command", []) for service in demo.values()), "an event printer"
    polled = set()
    for source in config.sources:
        endpoint = urlsplit(getattr(source, "endpoint", ""))
        assert endpoint.hostname in demo, f"{source.vendor}: endpoint is not a demo simulator service"
        sim = demo[endpoint.hostname]
        command = sim["command"]
        assert command[command.index("--vendor") + 1] == source.vendor
        assert command[command.index("--port") + 1] == str(endpoint.port)
        assert command[command.index("--seed") + 1] == str(DEMO_SEED)
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert sim["healthcheck"] == {"disable": True}, "the image's HEALTHCHECK is the poller's"
        # the simulator's demo world accepts exactly these credentials and ids
        expected = _demo_account(setups[source.vendor].sources(endpoint.geturl()), source)
        assert source == expected
        polled.add(source.vendor)
    assert polled == set(setups), "every vendor with a simulator is in the compose demo"


def _demo_account(entries: list[dict[str, Any]], source: AccountConfig) -> AccountConfig:
    matching = [e for e in entries if e["account"] == source.account]
    assert matching, f"{source.vendor}: no demo account {source.account!r}"
    return parse_config({"sources": matching}, path="<demo>", env={}).sources[0]


def test_compose_simulator_command_is_one_the_cli_accepts() -> None:
    commands = [
        s["command"] for s in compose()["services"].values() if s.get("command", [""])[0] == "simulate"
    ]
    assert commands
    (subcommands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    if "simulate" not in subcommands.choices:
        pytest.skip("`poller simulate` is not in this tree yet")
    for command in commands:
        build_parser().parse_args(command)


# -- Kubernetes ----------------------------------------------------------------------------------------
def test_k8s_statefulset_config_secrets_probes_and_budget_agree(tmp_path: Path) -> None:
    docs = k8s_resources()
    sts = one_of(docs, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    replicas = spec["replicas"]
    assert replicas >= 2

    # leases share the accounts: no shard count to keep equal to the replica count; the pod's name
    # is its stable replica id
    env = {e["name"]: e for e in container["env"]}
    assert not [name for name in env if name.startswith("POLLER_SHARD")]
    assert env["POLLER_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert spec["podManagementPolicy"] == "Parallel"

    # the command: the image's, on the ConfigMap mounted where the image reads it
    assert container.get("args", image_command()[1:]) == image_command()[1:]
    assert "command" not in container, "keep the image's ENTRYPOINT"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    config_path = PurePosixPath(config_path_in_image())
    configmap = by_name(docs, "ConfigMap", mounts[str(config_path.parent)]["configMap"]["name"])
    toml_text = configmap["data"][config_path.name]

    # secrets: env names from envFrom Secrets, files from mounted Secrets; placeholders only
    env_secrets = [by_name(docs, "Secret", s["secretRef"]["name"]) for s in container["envFrom"]]
    secret_env = {key: "placeholder" for s in env_secrets for key in s["stringData"]}
    file_mounts = {
        path: by_name(docs, "Secret", v["secret"]["secretName"])
        for path, v in mounts.items()
        if "secret" in v
    }
    for secret in [d for d in docs if d["kind"] == "Secret"]:
        assert "data" not in secret, "no encoded values in the repository"
        assert all(v == "REPLACE_ME" for v in secret["stringData"].values()), "placeholders only"
    local = tmp_path / "secrets"
    for kind, ref in env_refs(tomllib.loads(toml_text)):
        if kind == "env":
            assert ref in secret_env, f"env {ref} is in no Secret the pod imports"
            continue
        directory, name = str(PurePosixPath(ref).parent), PurePosixPath(ref).name
        assert directory in file_mounts, f"file {ref} is not on a mounted Secret"
        assert name in file_mounts[directory]["stringData"], f"{ref}: no key {name} in the Secret"
        (local / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (local / directory.lstrip("/") / name).write_text("placeholder")
        toml_text = toml_text.replace(f'"{ref}"', json.dumps(str(local / directory.lstrip("/") / name)))
    config_file = tmp_path / "poller.toml"
    config_file.write_text(toml_text)
    config = load_config(config_file, env={**secret_env, "POLLER_REPLICA_ID": "aicc-poller-2"})
    assert config.coordination.mode == "leases" and config.coordination.replica_id == "aicc-poller-2"
    assert config.shard.count == 1
    assert len(config.sources) >= 2

    # ports and probes
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == config.http.port
    probes = {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("livenessProbe", "readinessProbe")
    }
    assert probes == {"livenessProbe": ("/healthz", "http"), "readinessProbe": ("/readyz", "http")}
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.http.port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service = by_name(docs, "Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    # drain fits, resources set, non-root as in the image
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_grace + NATS_DRAIN_SECONDS
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == instruction(final_stage(), "USER").split(":")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    # selectors
    for selector in (
        spec["selector"]["matchLabels"],
        service["spec"]["selector"],
        one_of(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert one_of(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert pod["serviceAccountName"] == one_of(docs, "ServiceAccount")["metadata"]["name"]

    # NATS: the chart's JetStream cluster holds R3, which is what the config asks for
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert values["config"]["cluster"]["enabled"] is True
    assert config.nats.replicas == 3 <= values["config"]["cluster"]["replicas"]
    assert urlsplit(config.nats.url).hostname == "nats"  # release name in the install command
    assert "helm upgrade --install nats nats/nats" in (K8S / "nats-values.yaml").read_text()


def test_k8s_kustomization_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    kinds = {doc["kind"] for doc in docs}
    assert {"StatefulSet", "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert "Secret" not in kinds, "placeholder Secrets only with deploy/k8s-try-out"
    # the generated ConfigMap's name carries a content hash, and the pods mount that name
    (configmap,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("aicc-poller-config")
    ]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    mounted = {v["configMap"]["name"] for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v}
    assert (
        mounted == {configmap["metadata"]["name"]} and configmap["metadata"]["name"] != "aicc-poller-config"
    )
    for extra, expected in (
        (K8S_TRY_OUT, {"Secret"}),
        (K8S / "monitoring", {"ServiceMonitor", "PrometheusRule"}),
    ):
        built = subprocess.run(
            [kubectl, "kustomize", str(extra)], capture_output=True, text=True, timeout=60, check=False
        )
        assert built.returncode == 0, built.stderr
        assert expected <= {doc["kind"] for doc in yaml.safe_load_all(built.stdout) if doc}


def test_k8s_monitoring_autoscaling_and_network_policy_fit_the_poller() -> None:
    docs = k8s_resources()
    sts = one_of(docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    service = by_name(docs, "Service", sts["spec"]["serviceName"])

    rule = yaml.safe_load((K8S / "monitoring" / "prometheusrule.yaml").read_text())
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"], "prometheusrule.yaml is alerts.yaml for the Operator"
    monitor = yaml.safe_load((K8S / "monitoring" / "servicemonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}

    hpa = yaml.safe_load((K8S / "hpa.example.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "aicc-poller",
    }
    assert hpa["spec"]["minReplicas"] >= 1

    policy = one_of(docs, "NetworkPolicy")
    assert (
        policy["spec"]["podSelector"]["matchLabels"].items()
        <= sts["spec"]["template"]["metadata"]["labels"].items()
    )
    assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} <= port_names
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {4222, 53, 443} <= egress_ports


# -- alerting --------------------------------------------------------------------------------------------
def test_alert_rules_use_only_exposed_metrics_and_labels() -> None:
    exposed = exposed_metrics()
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    used: set[str] = set()
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used |= check_selectors(rule["expr"], exposed, f"alert {rule['alert']}")
    names = {rule["alert"] for rule in rules}
    assert len(names) == len(rules)
    # what the issue asks to alert on
    for metric in (
        "aicc_source_degraded",
        "aicc_events_total",
        "aicc_publish_failures_total",
        "aicc_vendor_throttled_total",
        "aicc_state_commit_lag_seconds",
        "aicc_task_transitions_total",
        "aicc_calls_total",
    ):
        assert metric in used, f"no alert on {metric}"
    # the campaign alerts page someone who is not on the poller's team: they say where to start
    for rule in rules:
        if rule["alert"] in ("AiccCampaignStoppedByVendor", "AiccCallerLineFailing"):
            assert re.fullmatch(r"README\.md#runbook-[a-z-]+", rule["annotations"]["runbook_url"])
    tested = ALERT_TESTS.read_text()
    assert all(f"alertname: {name}" in tested for name in names), "every alert has a promtool unit test"


def test_dashboard_queries_use_only_exposed_metrics() -> None:
    exposed = exposed_metrics()
    board = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    used: set[str] = set()
    for where, expr in dashboard_exprs():
        used |= check_selectors(expr, exposed, where)
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    query = variables["vendor"]["query"]["query"]
    match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
    assert match and match.group(2) in exposed[match.group(1)]

    # every metric the poller exposes is on the dashboard somewhere
    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|sum|count|created)$", "", name)

    missing = {family(name) for name in exposed} - {family(name) for name in used}
    assert not missing, f"metrics without a panel: {sorted(missing)}"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    tool = promtool()
    for args in (["check", "rules", ALERTS.name], ["test", "rules", ALERT_TESTS.name]):
        done = subprocess.run(
            [tool, *args], cwd=ALERTS.parent, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    tool = promtool()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
