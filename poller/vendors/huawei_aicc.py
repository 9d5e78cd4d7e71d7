"""Huawei Cloud AICC (besclouds): the detail of each watched task id, with an OAuth2 access token.

The vendor has no listing: each cycle fetches ``…/openapi/task/{id}`` for every watched id
(concurrently, under the per-credential limiter). The watched ids come from the config and from
run-time requests on the control subject (see :mod:`poller.control`).

Vanish rule: an id the vendor answers "does not exist" for is left out of the observation, and the
observation is complete only when every id due this cycle got a definitive answer (found or not
found). So a task vanishes only after a cycle without a single failed fetch; a failed id keeps its
committed state. Ids no longer watched (removed at run time or from the file) keep their last
committed state too: removing an id never reads as a vanish.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Literal

import anyio
import msgspec

from poller.errors import AuthFailed, BadResponse, ClientError, SourceError, Throttled, TokenExpired
from poller.pipeline.snapshot import EntitySnapshot, Observation, PageSink
from poller.pipeline.state import VANISHED, EntityState, SourceState
from poller.secrets import Secret
from poller.transport import Response
from poller.vendors.base import (
    AccountConfig,
    AdapterContext,
    Endpoint,
    NonEmpty,
    Source,
    Vendor,
    decode_or_bad,
    server_status,
)
from poller.vendors.normalize import state_map
from poller.vendors.watch import WatchList
from schemas import EntityKind, TaskState
from schemas.vendors.huawei import DetailRequestBody, TaskDetail, TaskDetailAnswer, TaskId, TokenAnswer

log = logging.getLogger("poller.vendors.huawei_aicc")

VENDOR = "huawei-aicc"
DETAIL_API = "task_detail"
TOKEN_API = "token"
DETAIL_PATH = "/service/AICC__Case/1.0.0/openapi/task/{id}"
TOKEN_PATH = "/baas/auth/v1.0/oauth2/token"
#: the simulator's (and our best guess of the vendor's) answer for an unknown task id
NOT_FOUND_CODE = "CM-404001"
#: a token answer without a usable ``expires_in`` is trusted for this long
FALLBACK_TOKEN_LIFETIME = 300.0
#: a token is refreshed at least this often whatever ``expires_in`` says (an absurd value would
#: otherwise keep one token for good)
MAX_TOKEN_LIFETIME = 86400.0

#: The status enum is not in the public doc. The doc's example says "Pending"; the rest follow the
#: names the related Case uses ("Processing") and common AppCube task states. "closed" is not a
#: vendor value: it stands for a null status with a closedDate (see :func:`raw_status`).
STATES = state_map(
    VENDOR,
    {
        "Pending": TaskState.PENDING,  # 待处理, the doc's example
        "New": TaskState.PENDING,
        "Open": TaskState.PENDING,
        "Processing": TaskState.RUNNING,  # 处理中
        "InProgress": TaskState.RUNNING,
        "Suspended": TaskState.PAUSED,  # 挂起
        "Paused": TaskState.PAUSED,
        "Completed": TaskState.COMPLETED,  # 已完成
        "Closed": TaskState.COMPLETED,  # 已关闭
        "closed": TaskState.COMPLETED,
        "Cancelled": TaskState.CANCELLED,  # 已取消
        "Canceled": TaskState.CANCELLED,
    },
    field="taskInfo.status",
)


class HuaweiAiccAccount(AccountConfig, frozen=True, kw_only=True):
    """One AICC tenant's credentials and the task ids it watches.

    ``token_path``: the AICC doc points to an authentication page that is not public. The default is
    the AppCube OAuth2 client-credentials endpoint (form body ``grant_type=client_credentials``,
    ``client_id``, ``client_secret`` → ``access_token``, ``expires_in``), which the ``/service/…``
    URL convention suggests but nobody has confirmed for AICC: change it if your tenant differs.
    ``method``: the Chinese doc says GET, the international one POST (then the body is ``{"id": …}``).
    ``not_found_codes``: ``resCode`` values that mean "no such task" (the real one is unconfirmed).
    Any other error for one id fails that id for the cycle, so nothing can vanish.
    """

    client_id: NonEmpty
    client_secret: Secret
    task_ids: list[TaskId] = msgspec.field(default_factory=list)
    endpoint: Endpoint = "https://service.besclouds.com"
    method: Literal["GET", "POST"] = "GET"
    token_path: Annotated[str, msgspec.Meta(pattern=r"^/\S*$")] = TOKEN_PATH
    detail_path: Annotated[str, msgspec.Meta(pattern=r"\{id\}")] = DETAIL_PATH
    #: refresh the token once this fraction of its ``expires_in`` has passed
    token_refresh_at: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    #: a task in a non-terminal state is fetched at most this often (0: every cycle)
    detail_interval: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    #: a task in a terminal state, or one the vendor says does not exist, is re-checked this often
    terminal_detail_interval: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    #: detail requests in flight at once (the rate limit still applies on top)
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 32
    not_found_codes: list[NonEmpty] = msgspec.field(default_factory=lambda: [NOT_FOUND_CODE])


# -- tokens -----------------------------------------------------------------------------------------
class TokenCache:
    """One access token, fetched on first use, refreshed before it expires or after a 401.

    Concurrent requests share one fetch; an expired-token answer invalidates only the token that
    request used, so a fresh token fetched meanwhile is not thrown away.
    """

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]], refresh_at: float) -> None:
        self._fetch = fetch
        self._refresh_fraction = refresh_at
        self._token: str | None = None
        self._refresh_after = 0.0
        self._lock = anyio.Lock()

    def _fresh(self) -> str | None:
        if self._token is not None and anyio.current_time() < self._refresh_after:
            return self._token
        return None

    async def get(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh()
            if token is not None:
                return token
            asked = anyio.current_time()
            token, lifetime = await self._fetch()
            self._token = token
            self._refresh_after = asked + lifetime * self._refresh_fraction
            return token

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None


_decode_token = msgspec.json.Decoder(TokenAnswer)


def token_lifetime(answer: TokenAnswer) -> float:
    try:
        seconds = float(answer.expires_in) if answer.expires_in is not None else FALLBACK_TOKEN_LIFETIME
    except ValueError:
        seconds = FALLBACK_TOKEN_LIFETIME
    if not seconds > 0:  # also NaN
        return FALLBACK_TOKEN_LIFETIME
    return min(seconds, MAX_TOKEN_LIFETIME)


def read_token(resp: Response) -> TokenAnswer:
    """The token answer decoded, or the classified error of a failed token request."""
    server_status(resp, TOKEN_API)
    if resp.status == 200:
        answer: TokenAnswer = decode_or_bad(_decode_token, resp.body, TOKEN_API)
        if not answer.access_token:
            raise BadResponse(f"token answer without access_token: {answer.message}", api=TOKEN_API)
        return answer
    try:
        message = _decode_token.decode(resp.body).message
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = ""
    detail = f"HTTP {resp.status}" + (f": {message}" if message else "")
    if resp.status in (400, 401, 403):
        raise AuthFailed(detail, api=TOKEN_API)
    raise ClientError(detail, api=TOKEN_API)


# -- task detail ------------------------------------------------------------------------------------
_decode_detail = msgspec.json.Decoder(TaskDetailAnswer)


def classify_detail(resp: Response, not_found_codes: frozenset[str]) -> TaskDetailAnswer:
    """Raise for an error answer; return the decoded answer for a detail or a "no such task"."""
    server_status(resp, DETAIL_API)
    try:
        answer: TaskDetailAnswer = _decode_detail.decode(resp.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if resp.status == 401:
            raise TokenExpired("HTTP 401", api=DETAIL_API) from exc
        if resp.status != 200:
            raise ClientError(f"HTTP {resp.status}", api=DETAIL_API) from exc
        raise BadResponse(f"undecodable answer: {exc}", api=DETAIL_API) from exc
    code = answer.code
    detail = f"HTTP {resp.status}: {code}: {answer.message}"
    if resp.status == 401:
        # expired or otherwise invalid: a new token is the only thing that can help
        raise TokenExpired(detail, api=DETAIL_API)
    if resp.status == 403:
        raise AuthFailed(detail, api=DETAIL_API)
    if code in not_found_codes:  # a vendor code, never a bare 404 (a wrong path must not vanish tasks)
        # "no such task" carries nothing to trust, whatever else the body holds
        return msgspec.structs.replace(answer, result=None, taskInfo=None)
    if code == "APIG.0308":
        raise Throttled(detail, api=DETAIL_API)
    if resp.status != 200 or (code is not None and code != "0"):
        raise ClientError(detail, api=DETAIL_API)
    if answer.detail is None or answer.detail.taskInfo is None:
        raise BadResponse("answer without taskInfo", api=DETAIL_API)
    return answer


def raw_status(detail: TaskDetail) -> str:
    """The raw value kept beside the normalized state; "closed" for a null status with a closedDate."""
    info = detail.taskInfo
    if info is None:
        return ""
    if info.status:
        return info.status
    return "closed" if info.closedDate else ""


def normalize(task_id: str, detail: TaskDetail) -> EntitySnapshot:
    raw = raw_status(detail)
    state = STATES.normalize(raw) if raw else TaskState.UNKNOWN
    info = detail.taskInfo
    return EntitySnapshot(
        kind=EntityKind.TASK, id=task_id, name=info.title if info else None, state=state, raw_state=raw
    )


def remembered(task_id: str, entity: EntityState) -> EntitySnapshot | None:
    """The committed snapshot of an entity this cycle did not fetch: unchanged, so no event."""
    if entity.state == VANISHED:
        return None
    try:
        state, kind = TaskState(entity.state), EntityKind(entity.kind)
    except ValueError:
        return None
    return EntitySnapshot(
        kind=kind,
        id=task_id,
        state=state,
        raw_state=entity.raw,
        parent_id=entity.parent,
        name=entity.name,
        completed=entity.completed,
        total=entity.total,
    )


class HuaweiAiccSource(Source):
    """One AICC tenant: the watched task ids of one client id."""

    vendor = VENDOR

    def __init__(self, config: HuaweiAiccAccount, ctx: AdapterContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        base = config.endpoint.rstrip("/")
        self._token_url = base + config.token_path
        self._detail_base = base
        self._not_found = frozenset(config.not_found_codes)
        self._detail_limiter = self.limiter(DETAIL_API, config.client_id, APIS[DETAIL_API])
        self._token_limiter = self.limiter(TOKEN_API, config.client_id, APIS[TOKEN_API])
        self.tokens = TokenCache(self._fetch_token, config.token_refresh_at)
        self.watch = WatchList(config.task_ids)
        #: id → earliest anyio time of its next fetch
        self._next_fetch: dict[str, float] = {}
        self._failing: set[str] = set()

    @property
    def apis(self) -> tuple[str, ...]:
        return (DETAIL_API, TOKEN_API)

    async def _fetch_token(self) -> tuple[str, float]:
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self.cfg.client_id,
                "client_secret": self.cfg.client_secret.reveal(),
            }
        ).encode()

        async def prepare() -> tuple[Mapping[str, str], bytes]:
            return {"Content-Type": "application/x-www-form-urlencoded"}, form

        answer = await self.send(
            TOKEN_API, self._token_limiter, "POST", self._token_url, parse=read_token, prepare=prepare
        )
        assert answer.access_token
        return answer.access_token, token_lifetime(answer)

    def detail_url(self, task_id: str) -> str:
        return self._detail_base + self.cfg.detail_path.replace("{id}", urllib.parse.quote(task_id, safe=""))

    async def fetch_detail(self, task_id: str) -> TaskDetail | None:
        """The task's detail, or None when the vendor says it does not exist."""
        body = msgspec.json.encode(DetailRequestBody(id=task_id)) if self.cfg.method == "POST" else None
        used: list[str] = []

        async def prepare() -> tuple[Mapping[str, str], bytes | None]:
            token = await self.tokens.get()
            used[:] = [token]
            return {"Content-Type": "application/json", "access-token": token}, body

        def parse(resp: Response) -> TaskDetailAnswer:
            try:
                return classify_detail(resp, self._not_found)
            except TokenExpired:
                if used:
                    self.tokens.invalidate(used[0])
                raise

        url = self.detail_url(task_id)
        answer = await self.send(
            DETAIL_API, self._detail_limiter, self.cfg.method, url, parse=parse, prepare=prepare
        )
        return answer.detail

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        self.watch.load(committed.cursors)
        started = anyio.current_time()
        for task_id in [i for i in self._next_fetch if not self.watch.is_watched(i)]:
            del self._next_fetch[task_id]  # an id watched again later is fetched at once
        due = [i for i in self.watch.watched() if self._next_fetch.get(i, 0.0) <= started]
        fresh: dict[str, EntitySnapshot] = {}
        missing: set[str] = set()
        failed: dict[str, SourceError] = {}
        if due:
            await self.tokens.get()  # no token: the whole cycle fails, once, with the reason
            slots = anyio.CapacityLimiter(self.cfg.max_concurrency)

            async def one(task_id: str) -> None:
                async with slots:
                    try:
                        detail = await self.fetch_detail(task_id)
                    except SourceError as error:
                        failed[task_id] = error
                        return
                if detail is None:
                    missing.add(task_id)
                    wait = self.cfg.terminal_detail_interval
                else:
                    snap = fresh[task_id] = normalize(task_id, detail)
                    terminal = snap.state.terminal
                    wait = self.cfg.terminal_detail_interval if terminal else self.cfg.detail_interval
                self._next_fetch[task_id] = started + wait

            async with anyio.create_task_group() as tg:
                for task_id in due:
                    tg.start_soon(one, task_id)
            if failed and not fresh and not missing:
                raise failed[next(i for i in due if i in failed)]
            if failed:
                for task_id in missing:  # no vanish this time: ask again until a complete cycle says so
                    self._next_fetch[task_id] = started
            self._report(failed)
        # the list may have changed while we fetched: only what is watched now counts as seen
        entities = [snap for task_id, snap in fresh.items() if self.watch.is_watched(task_id)]
        for task_id, entity in committed.entities.items():
            if self.watch.is_watched(task_id) and (task_id in fresh or task_id in missing):
                continue
            snap = remembered(task_id, entity)
            if snap is not None:
                entities.append(snap)
        return Observation(entities=entities, complete=not failed, cursors=self.watch.cursors())

    def _report(self, failed: Mapping[str, SourceError]) -> None:
        """Log when ids start or stop failing (not every cycle): the cycle itself still counts."""
        now_failing = set(failed)
        started = now_failing - self._failing
        if started:
            reasons = sorted({failed[i].reason.value for i in started})
            log.warning(
                "task detail failed for some ids; their state is kept and nothing vanishes",
                extra={"vendor": VENDOR, "account": self.account, "ids": len(started), "reasons": reasons},
            )
        if self._failing - now_failing:
            log.info(
                "task detail answers again",
                extra={"vendor": VENDOR, "account": self.account, "ids": len(self._failing - now_failing)},
            )
        self._failing = now_failing


def build_sources(config: HuaweiAiccAccount, ctx: AdapterContext) -> list[Source]:
    return [HuaweiAiccSource(config, ctx)]


#: request limits per second: undocumented, so conservative defaults (override per account)
APIS: Mapping[str, int] = {DETAIL_API: 50, TOKEN_API: 5}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=HuaweiAiccAccount,
    sources=build_sources,
    apis=APIS,
    doc="Huawei Cloud AICC task detail per watched id (access-token; watch list on the control subject)",
)
