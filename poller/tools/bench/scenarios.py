"""One vendor API at the benchmark's size: its simulator half and its poller half."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import Any

import aiohttp

from poller.simulators.base import Simulator
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.bench.baseline import (
    PlainOutboundBotPoller,
    PlainPoller,
    PlainTencentPoller,
)
from poller.tools.bench.sizes import (
    ACCOUNT,
    APP,
    LATENCY_FACTOR,
    PLAIN_PREFIX,
    SECRET_ID,
    SECRET_KEY,
    TARGETED_LATENCY_FACTOR,
    Sizes,
)
from poller.vendors.tencent_ccc import APIS, LIST_API

__all__ = [
    "OUTBOUNDBOT_MODULES",
    "SCENARIOS",
    "OutboundBotActiveScenario",
    "OutboundBotScenario",
    "Scenario",
    "TencentScenario",
    "outboundbot_scenario",
]


class Scenario(ABC):
    """One vendor API at the size the performance bars name.

    Half of it runs in the simulator's process (``build``, ``apply_change``), half in the poller's
    (``source``, ``plain_poller``); both halves are built from the same (entities, page size).
    """

    vendor: str
    #: the scenario's name: the prefix of its figures' keys (the vendor, unless a vendor has several)
    name: str
    api: str
    #: other APIs the poller reads in this scenario (their request logs are checked as well)
    extra_apis: tuple[str, ...] = ()
    label: str
    unit: str
    #: the latency bar as a multiple of the full-sweep floor
    bar_factor: float = LATENCY_FACTOR
    #: the poller's ``max_staleness`` where it follows what can change: restarts of finished
    #: entities are timed against it (None: a full-sweep scenario, no restarts made)
    max_staleness: float | None = None

    def __init__(self, entities: int, page_size: int) -> None:
        self.entities = entities
        self.page_size = page_size

    @property
    @abstractmethod
    def limit(self) -> int: ...

    @property
    def pages(self) -> int:
        return -(-self.entities // self.page_size)

    @property
    def floor(self) -> float:
        return self.pages / self.limit

    @abstractmethod
    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        """The simulator holding every entity, and the entities' ids."""

    @abstractmethod
    def apply_change(self, sim: Simulator, entity_id: str) -> str:
        """Change one entity's status in the simulator; returns its new raw value."""

    def restartable(self, sim: Simulator, count: int, seed: int) -> list[str]:
        """Up to ``count`` finished entities the vendor may restart during the run (none here)."""
        return []

    def apply_restart(self, sim: Simulator, entity_id: str) -> str:
        """Restart one finished entity as the vendor would; returns its new raw value."""
        raise NotImplementedError(f"{self.name} makes no restarts")

    @abstractmethod
    def source(self, url: str) -> dict[str, Any]:
        """The ``[[sources]]`` entry pointing the Service at the simulator, sweeping continuously."""

    @abstractmethod
    def plain_poller(self, url: str, http: aiohttp.ClientSession, js: Any) -> PlainPoller: ...


class TencentScenario(Scenario):
    vendor = name = "tencent-ccc"
    api = LIST_API
    label = "Tencent CCC DescribeAutoCalloutTasks"
    unit = "tasks"

    @property
    def limit(self) -> int:
        return APIS[LIST_API]

    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=seed, rate_limit=self.limit)
        ids = [str(sim.add_task(APP, state=1, callees=10)) for _ in range(self.entities)]
        return sim, ids

    def apply_change(self, sim: Simulator, entity_id: str) -> str:
        assert isinstance(sim, TencentCccSimulator)
        task = sim.apps[APP].tasks[int(entity_id)]
        new = 5 if task.state == 1 else 1  # running ⇄ paused
        sim.set_state(APP, task.task_id, new)
        return str(new)

    def source(self, url: str) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "account": ACCOUNT,
            "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY,
            "sdk_app_ids": [APP],
            "endpoint": url,
            "poll_interval": 0.001,  # back to back: every sweep takes longer than this
            "page_size": self.page_size,
        }

    def plain_poller(self, url: str, http: aiohttp.ClientSession, js: Any) -> PlainPoller:
        return PlainTencentPoller(
            http=http,
            js=js,
            endpoint=url,
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
            sdk_app_id=APP,
            page_size=self.page_size,
            limit=self.limit,
            account=ACCOUNT,
            subject_prefix=PLAIN_PREFIX,
        )


class OutboundBotScenario(Scenario):
    """One job group of ``entities`` jobs, every one executing; a change pauses or resumes one."""

    vendor = name = "alibaba-outboundbot"
    api = "ListJobsByGroup"
    label = "Alibaba OutboundBot ListJobsByGroup"
    unit = "jobs"
    instance = "bench-instance"
    group = "bench-group"
    access_key_id = "LTAIbenchmark"
    access_key_secret = "benchmark-outboundbot-secret"

    @property
    def limit(self) -> int:
        from poller.vendors.alibaba_outboundbot import APIS, LIST_API

        return APIS[LIST_API]

    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        sim = OutboundBotSimulator(
            credentials={self.access_key_id: self.access_key_secret},
            seed=seed,
            rate_limit=self.limit,
            max_page_size=max(100, self.page_size),
        )
        sim.add_group(self.instance, self.group)
        ids = [sim.add_job(self.instance, self.group, status="Executing") for _ in range(self.entities)]
        return sim, ids

    def apply_change(self, sim: Simulator, entity_id: str) -> str:
        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        assert isinstance(sim, OutboundBotSimulator)
        new = "Paused" if sim.job(entity_id).status == "Executing" else "Executing"
        sim.set_status(entity_id, new)
        return new

    def source(self, url: str) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "account": ACCOUNT,
            "instance_id": self.instance,
            "job_group_ids": [self.group],
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
            "endpoint": url,
            "poll_interval": 0.001,  # back to back: every sweep takes longer than this
            "page_size": self.page_size,
            "targeted_reads": False,
        }

    def plain_poller(self, url: str, http: aiohttp.ClientSession, js: Any) -> PlainPoller:
        from poller.secrets import Secret
        from poller.vendors.alibaba_common import RpcSigner
        from poller.vendors.alibaba_outboundbot import VERSION

        signer = RpcSigner(
            endpoint=url,
            version=VERSION,
            access_key_id=self.access_key_id,
            access_key_secret=Secret(self.access_key_secret),
            signature="v3",
        )
        return PlainOutboundBotPoller(
            http=http,
            js=js,
            signer=signer,
            instance_id=self.instance,
            job_group_id=self.group,
            page_size=self.page_size,
            limit=self.limit,
            account=ACCOUNT,
            subject_prefix=PLAIN_PREFIX,
        )


class OutboundBotActiveScenario(OutboundBotScenario):
    """The same group, but only ``LIVE_FRACTION`` of its jobs still execute (the rest succeeded).

    Every change toggles a live job (executing ⇄ paused), so only reads of live jobs can see it in
    time: the poller follows them with targeted reads and spreads a relist over ``MAX_STALENESS``.
    A few succeeded jobs are restarted (executing again) besides, timed against ``MAX_STALENESS``.
    """

    name = "alibaba-outboundbot.active"
    label = "Alibaba OutboundBot ListJobsByGroup, 5% of jobs live (targeted reads + relist)"
    extra_apis = ("ListJobs",)
    bar_factor = TARGETED_LATENCY_FACTOR
    LIVE_FRACTION = 0.05
    MAX_STALENESS = 120.0
    max_staleness = MAX_STALENESS

    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        import random

        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        sim = OutboundBotSimulator(
            credentials={self.access_key_id: self.access_key_secret},
            seed=seed,
            rate_limit=self.limit,
            max_page_size=max(100, self.page_size),
        )
        sim.add_group(self.instance, self.group)
        rng = random.Random(seed)
        live = set(rng.sample(range(self.entities), max(1, round(self.entities * self.LIVE_FRACTION))))
        ids = [
            sim.add_job(self.instance, self.group, status="Executing" if n in live else "Succeeded")
            for n in range(self.entities)
        ]
        return sim, [ids[n] for n in sorted(live)]

    def restartable(self, sim: Simulator, count: int, seed: int) -> list[str]:
        import random

        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        assert isinstance(sim, OutboundBotSimulator)
        succeeded = list(sim.instances[self.instance].by_status[self.group].get("Succeeded", {}))
        # a generator of its own: the live jobs and the change stream stay what the seed made them
        return random.Random(f"restarts {seed}").sample(succeeded, min(count, len(succeeded)))

    def apply_restart(self, sim: Simulator, entity_id: str) -> str:
        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        assert isinstance(sim, OutboundBotSimulator)
        sim.restart_job(entity_id)
        return sim.job(entity_id).status

    def source(self, url: str) -> dict[str, Any]:
        return {**super().source(url), "targeted_reads": True, "max_staleness": self.MAX_STALENESS}


OUTBOUNDBOT_MODULES = ("poller.vendors.alibaba_outboundbot", "poller.simulators.alibaba_outboundbot")


def outboundbot_scenario(
    sizes: Sizes, kind: type[OutboundBotScenario] = OutboundBotScenario
) -> Scenario | str:
    """A 100k-jobs row, or why it is not measured."""
    missing = [name for name in OUTBOUNDBOT_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"not measured: {', '.join(m.replace('.', '/') + '.py' for m in missing)} not present yet"
    try:
        scn = kind(sizes.outboundbot_jobs, sizes.outboundbot_page_size)
        scn.limit  # noqa: B018  (imports the vendor module: fails here, not mid-run, if it is broken)
    except Exception as exc:
        return f"not measured: the OutboundBot modules do not load ({type(exc).__name__}: {exc})"
    return scn


SCENARIOS: dict[str, type[Scenario]] = {
    TencentScenario.name: TencentScenario,
    OutboundBotScenario.name: OutboundBotScenario,
    OutboundBotActiveScenario.name: OutboundBotActiveScenario,
}
