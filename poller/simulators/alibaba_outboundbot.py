"""Alibaba Cloud OutboundBot simulator: ``ListJobsByGroup`` and ``ListJobs`` over instances, groups, jobs.

Pages from 1 (``PageNumber``/``PageSize``); ``ListJobsByGroup`` filters on one ``JobStatus`` and/or one
``JobFailureReason`` as documented; ``ListJobs`` answers the jobs named by ``JobId.1`` … ``JobId.N``
(at most 99, as the SDK documents). The per-credential limits are configurable (the vendor's are not
published; default 100/s per API). Jobs evolve from a seeded script the way real ones do: drafted →
scheduling → executing → succeeded, failed (with a FailureReason), paused or cancelled.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from poller.simulators.alibaba_common import AlibabaSimulator, Params, int_param
from poller.simulators.base import DemoSetup
from poller.vendors.alibaba_outboundbot import LIST_API, LIST_JOBS_API, LIST_JOBS_MAX_IDS, VERSION
from schemas.vendors.alibaba import (
    Contact,
    Job,
    JobPage,
    KeyValuePair,
    ListJobsByGroupResponse,
    ListJobsResponse,
    NumberList,
)

JOB_STATUSES = ("Scheduling", "Executing", "Succeeded", "Paused", "Failed", "Cancelled", "Drafted")
#: what a job can move to next; terminal ones stay
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "Drafted": ("Scheduling",),
    "Scheduling": ("Executing",),
    "Executing": ("Executing", "Succeeded", "Succeeded", "Failed", "Paused"),
    "Paused": ("Executing", "Cancelled"),
}
#: where a job ends: no script moves it on, only the vendor restarting it (``restart_job``)
FINISHED_STATUSES = ("Succeeded", "Failed", "Cancelled")
FAILURE_REASONS = ("NoAnswer", "Busy", "PoweredOff", "EmptyNumber", "OutOfService", "ContactBlockList")


@dataclass
class SimJob:
    job_id: str
    group_id: str
    status: str = "Scheduling"
    failure_reason: str | None = None
    callee_number: str = ""
    callee_name: str = ""
    calling_numbers: list[str] = field(default_factory=list)
    priority: int = 5
    reference_id: str = ""

    def wire(self) -> Job:
        return Job(
            JobId=self.job_id,
            JobGroupId=self.group_id,
            Status=self.status,
            FailureReason=self.failure_reason,
            CallingNumbers=NumberList(self.calling_numbers),
            Contacts=[
                Contact(
                    ContactId=str(uuid.uuid5(uuid.NAMESPACE_OID, self.job_id)),
                    ContactName=self.callee_name,
                    Honorific=self.callee_name,
                    JobId=self.job_id,
                    PhoneNumber=self.callee_number,
                    ReferenceId=self.reference_id,
                    Role="*",
                    State="Available",
                )
            ],
            Extras=[KeyValuePair(Key="source", Value="simulator")],
            Priority=self.priority,
            SystemPriority=1,
            ReferenceId=self.reference_id,
            ScenarioId="",
            StrategyId="",
        )


@dataclass
class SimInstance:
    #: job group id → job id → job, in creation order
    groups: dict[str, dict[str, SimJob]] = field(default_factory=dict)
    #: job group id → status → job id → job (a status filter reads only its own jobs)
    by_status: dict[str, dict[str, dict[str, SimJob]]] = field(default_factory=dict)


class OutboundBotSimulator(AlibabaSimulator):
    vendor = "alibaba-outboundbot"
    total_fields = frozenset({"TotalCount"})
    list_fields = frozenset({"List"})
    product = "OutboundBot"
    version = VERSION
    host_id = "outboundbot.cn-shanghai.aliyuncs.com"

    def __init__(
        self,
        *,
        credentials: dict[str, str],
        seed: int = 0,
        rate_limit: int = 100,
        max_page_size: int = 100,
        stringly: bool = False,
    ) -> None:
        super().__init__(
            credentials=credentials,
            seed=seed,
            rate_limits={LIST_API: rate_limit, LIST_JOBS_API: rate_limit},
            stringly=stringly,
        )
        self.instances: dict[str, SimInstance] = {}
        self.max_page_size = max_page_size
        self._serial = 0
        #: called with the PageNumber of each ListJobsByGroup before it is answered: lets a test
        #: change the world between the pages of one sweep
        self.before_page: Callable[[int], None] | None = None
        self.actions[LIST_API] = self._list_jobs_by_group
        self.actions[LIST_JOBS_API] = self._list_jobs
        #: job id → (instance id, job): ``ListJobs`` and ``job()`` find a job without a scan
        self._jobs: dict[str, tuple[str, SimJob]] = {}

    # -- the world ---------------------------------------------------------------------------------
    def _new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add_group(self, instance_id: str, group_id: str | None = None) -> str:
        group = group_id or self._new_id()
        instance = self.instances.setdefault(instance_id, SimInstance())
        instance.groups.setdefault(group, {})
        instance.by_status.setdefault(group, {})
        return group

    def add_job(
        self,
        instance_id: str,
        group_id: str,
        *,
        status: str = "Scheduling",
        failure_reason: str | None = None,
        callee_number: str | None = None,
        callee_name: str | None = None,
    ) -> str:
        self._serial += 1
        job_id = self._new_id()
        self.add_group(instance_id, group_id)
        job = SimJob(
            job_id=job_id,
            group_id=group_id,
            status=status,
            failure_reason=failure_reason,
            callee_number=callee_number or f"1390000{self._serial:04d}",
            callee_name=callee_name or f"客户{self._serial}",
            calling_numbers=[f"0571000{self._serial % 10:04d}"],
            reference_id=f"ref-{self._serial}",
        )
        instance = self.instances[instance_id]
        instance.groups[group_id][job_id] = job
        instance.by_status[group_id].setdefault(status, {})[job_id] = job
        self._jobs[job_id] = (instance_id, job)
        return job_id

    def job(self, job_id: str) -> SimJob:
        return self._jobs[job_id][1]

    def set_status(self, job_id: str, status: str, failure_reason: str | None = None) -> None:
        instance_id, job = self._jobs[job_id]
        self._move(self.instances[instance_id], job, status)
        job.failure_reason = failure_reason

    def restart_job(self, job_id: str) -> None:
        """What the vendor does when a finished job is run again: it executes, without its old
        failure reason, in the status index (and so the status filter) of its new status."""
        job = self.job(job_id)
        if job.status not in FINISHED_STATUSES:
            raise ValueError(f"job {job_id} is {job.status}, not finished: nothing to restart")
        self.set_status(job_id, "Executing")

    def _move(self, instance: SimInstance, job: SimJob, status: str) -> None:
        """Change a job's status and its place in the status index together."""
        index = instance.by_status[job.group_id]
        index.get(job.status, {}).pop(job.job_id, None)
        job.status = status
        index.setdefault(status, {})[job.job_id] = job

    def remove_job(self, job_id: str) -> None:
        instance_id, job = self._jobs.pop(job_id)
        instance = self.instances[instance_id]
        instance.groups.get(job.group_id, {}).pop(job_id, None)
        instance.by_status.get(job.group_id, {}).get(job.status, {}).pop(job_id, None)

    def evolve(self) -> list[tuple[str, str, str]]:
        """One seeded step for each non-terminal job: (job, old, new) of each change."""
        changes = []
        for instance in self.instances.values():
            for jobs in instance.groups.values():
                for job in list(jobs.values()):
                    options = NEXT_STATUSES.get(job.status, ())
                    if not options or self.rng.random() >= 0.3:
                        continue
                    new = self.rng.choice(options)
                    if new == job.status:
                        continue
                    changes.append((job.job_id, job.status, new))
                    job.failure_reason = self.rng.choice(FAILURE_REASONS) if new == "Failed" else None
                    self._move(instance, job, new)
        return changes

    # -- ListJobsByGroup ---------------------------------------------------------------------------
    async def _list_jobs_by_group(self, credential: str, params: Params) -> web.StreamResponse:
        for name in ("InstanceId", "JobGroupId"):
            if not params.get(name):
                return self.error(
                    "MissingParameter",
                    f'The input parameter "{name}" that is mandatory for processing this request '
                    "is not supplied.",
                )
        try:
            number = int_param(params, "PageNumber", 1)
            size = int_param(params, "PageSize", 10)
        except ValueError:
            return self.error(
                "InvalidParameter", "The specified parameter PageNumber or PageSize is invalid."
            )
        assert number is not None and size is not None
        if number < 1 or not 1 <= size <= self.max_page_size:
            return self.error(
                "InvalidParameter", "The specified parameter PageNumber or PageSize is invalid."
            )
        if self.before_page is not None:
            self.before_page(number)
        instance = self.instances.get(params["InstanceId"])
        if instance is None:
            return self.error("NotExist.Instance")
        group = instance.groups.get(params["JobGroupId"])
        if group is None:
            return self.error("InvalidParameter", "The specified parameter JobGroupId is invalid.")
        status, reason = params.get("JobStatus"), params.get("JobFailureReason")
        start = (number - 1) * size
        if status or reason:
            # one status is one exact value (as documented); the index holds each status's jobs
            pool = (
                group.values()
                if not status
                else instance.by_status[params["JobGroupId"]].get(status, {}).values()
            )
            matching = [j for j in pool if not reason or j.failure_reason == reason]
            total, selected = len(matching), matching[start : start + size]
        else:
            # unfiltered, a page is a slice: no pass over every job of a 100k-job group per request
            total, selected = len(group), list(itertools.islice(group.values(), start, start + size))
        page = JobPage(PageNumber=number, PageSize=size, TotalCount=total, List=[j.wire() for j in selected])
        return self.ok(
            ListJobsByGroupResponse(
                RequestId=str(uuid.uuid4()).upper(),
                Code="OK",
                Message="Success",
                HttpStatusCode=200,
                Success=True,
                Jobs=page,
            )
        )

    # -- ListJobs ----------------------------------------------------------------------------------
    async def _list_jobs(self, credential: str, params: Params) -> web.StreamResponse:
        instance_id = params.get("InstanceId")
        if not instance_id:
            return self.error(
                "MissingParameter",
                'The input parameter "InstanceId" that is mandatory for processing this request '
                "is not supplied.",
            )
        if instance_id not in self.instances:
            return self.error("NotExist.Instance")
        numbered = sorted(
            (int(key.removeprefix("JobId.")), value)
            for key, value in params.items()
            if key.startswith("JobId.") and key.removeprefix("JobId.").isdigit()
        )
        if not numbered or len(numbered) > LIST_JOBS_MAX_IDS:
            return self.error("InvalidParameter", "The specified parameter JobId is invalid.")
        jobs = []
        for _, job_id in numbered:
            found = self._jobs.get(job_id)
            if found is not None and found[0] == instance_id:
                jobs.append(found[1].wire())
        return self.ok(
            ListJobsResponse(
                RequestId=str(uuid.uuid4()).upper(),
                Code="OK",
                Message="Success",
                HttpStatusCode=200,
                Success=True,
                Jobs=jobs,
            )
        )


def demo_setup(seed: int) -> DemoSetup:

    access_key_id, secret = "LTAIdemoOutboundBot", "demo-outboundbot-secret"
    sim = OutboundBotSimulator(credentials={access_key_id: secret}, seed=seed, stringly=True)
    instance = "demo-instance-0001"
    groups = [sim.add_group(instance, f"demo-group-{n}") for n in (1, 2)]
    for group in groups:
        for _ in range(4):
            sim.add_job(instance, group, status="Drafted" if sim.rng.random() < 0.2 else "Scheduling")

    def sources(url: str) -> list[dict[str, Any]]:
        return [
            {
                "vendor": "alibaba-outboundbot",
                "account": "demo",
                "instance_id": instance,
                "job_group_ids": groups,
                "access_key_id": access_key_id,
                "access_key_secret": secret,
                "endpoint": url,
                "poll_interval": 1.0,
            }
        ]

    def evolve() -> None:
        sim.evolve()
        if sim.rng.random() < 0.1:
            sim.add_job(instance, groups[0])

    return DemoSetup(sim, sources, evolve)
