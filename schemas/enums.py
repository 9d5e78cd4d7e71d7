"""Vendor-neutral vocabularies. Every event also carries the vendor's raw value beside these."""

from enum import StrEnum


class TaskState(StrEnum):
    """Normalized lifecycle of a task, job or job group."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    PAUSED = "paused"
    PAUSED_BY_SYSTEM = "paused_by_system"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    CANCELLED_BY_SYSTEM = "cancelled_by_system"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {TaskState.COMPLETED, TaskState.CANCELLED, TaskState.CANCELLED_BY_SYSTEM, TaskState.FAILED}
)


class CallOutcome(StrEnum):
    """Normalized result of one finished call (BYRobot finishStatus, OutboundBot FailureReason)."""

    ANSWERED = "answered"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    POWERED_OFF = "powered_off"
    INVALID_NUMBER = "invalid_number"
    SUSPENDED_LINE = "suspended_line"
    CALLER_NUMBER_UNAVAILABLE = "caller_number_unavailable"
    CALLER_IN_ARREARS = "caller_in_arrears"
    MISSED = "missed"
    CALL_LOSS = "call_loss"
    FAILED = "failed"
    UNKNOWN = "unknown"


class EntityKind(StrEnum):
    """What an entity event is about: a task, a single-callee job (OutboundBot) or a job group."""

    TASK = "task"
    JOB = "job"
    JOB_GROUP = "job_group"


class DegradeReason(StrEnum):
    """Why a source is degraded; alerting routes on this."""

    THROTTLED = "throttled"
    AUTH_FAILED = "auth_failed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"
    CLIENT_ERROR = "client_error"
    #: a bug of the poller's own while handling this source (logged with a traceback)
    INTERNAL_ERROR = "internal_error"
    #: the vendor reported more entities than the source's ``max_entities`` ceiling: an absurd or
    #: hostile count is refused instead of sizing the work
    TOO_LARGE = "too_large"
    #: NATS refuses this source's events for good (too large, no permission): no retry can fix it
    PUBLISH_REJECTED = "publish_rejected"
    #: NATS refuses this source's state commit for good (a value larger than the state bucket takes):
    #: events still flow, but a restart replays ever more of the stream until it is fixed
    COMMIT_REJECTED = "commit_rejected"
