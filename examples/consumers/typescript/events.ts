// The aicc-poller event contract in TypeScript (schema version 2).
// Written from schemas/events.schema.json; tests/schemas/test_consumers.py checks that every event,
// field, optionality and enum here is the schema's, so the two cannot drift apart silently.

export type TaskState =
  | "pending"
  | "running"
  | "stopping"
  | "paused"
  | "paused_by_system"
  | "completed"
  | "cancelled"
  | "cancelled_by_system"
  | "failed"
  | "unknown";

export type CallOutcome =
  | "answered"
  | "rejected"
  | "no_answer"
  | "busy"
  | "powered_off"
  | "invalid_number"
  | "suspended_line"
  | "caller_number_unavailable"
  | "caller_in_arrears"
  | "missed"
  | "call_loss"
  | "failed"
  | "unknown";

export type EntityKind = "task" | "job" | "job_group";

export type DegradeReason =
  | "throttled"
  | "auth_failed"
  | "unreachable"
  | "timeout"
  | "server_error"
  | "bad_response"
  | "client_error"
  | "internal_error"
  | "too_large"
  | "publish_rejected"
  | "commit_rejected";

/** RFC 3339 date-time with its zone offset. */
export type DateTime = string;

export interface Status {
  state: TaskState;
  raw: string;
}

export interface CallDetail {
  turns?: number | null;
  hung_up_by?: string | null;
  results?: Record<string, string>;
}

interface EventBase {
  /** absent before schema version 2 */
  schema_version?: number;
  event_id: string;
  vendor: string;
  account: string;
  observed_at: DateTime;
}

interface EntityEvent extends EventBase {
  kind: EntityKind;
  entity_id: string;
  parent_id?: string | null;
  name?: string | null;
  seq: number;
}

export interface TaskAppeared extends EntityEvent {
  type: "task-appeared";
  current: Status;
  completed?: number | null;
  total?: number | null;
  /** true: the source's first listing; false: created since; null/absent: before schema 2 */
  initial_inventory?: boolean | null;
}

export interface TaskStatusChanged extends EntityEvent {
  type: "task-status-changed";
  previous: Status;
  current: Status;
}

export interface JobStatusChanged extends EntityEvent {
  type: "job-status-changed";
  previous: Status;
  current: Status;
}

export interface TaskProgress extends EntityEvent {
  type: "task-progress";
  previous_completed: number | null;
  completed: number;
  total: number | null;
  by_state?: Record<string, number> | null;
}

export interface TaskVanished extends EntityEvent {
  type: "task-vanished";
  previous: Status;
}

export interface CallFinished extends EventBase {
  type: "call-finished";
  call_id: string;
  task_id: string;
  outcome: CallOutcome;
  raw_outcome: string;
  failure_reason?: string | null;
  callee_number?: string | null;
  callee_name?: string | null;
  /** talk time in seconds */
  duration_seconds?: number | null;
  started_at?: DateTime | null;
  ended_at?: DateTime | null;
  detail?: CallDetail | null;
  /** the vendor's own id of this call or session */
  vendor_call_id?: string | null;
  /** the calling line after the privacy policy */
  caller_number?: string | null;
  /** seconds */
  talk_seconds?: number | null;
  /** seconds */
  ring_seconds?: number | null;
  /** how the poller learned of the call (informational) */
  learned_by?: "poll" | "push";
}

export interface SourceDegraded extends EventBase {
  type: "source-degraded";
  api: string;
  reason: DegradeReason;
  detail: string;
  episode: number;
  /** SdkAppId, job group, company id, or "" for a whole account */
  scope?: string;
  /** when the episode's first failed request was sent */
  first_failed_at?: DateTime | null;
}

export interface SourceRecovered extends EventBase {
  type: "source-recovered";
  api: string;
  episode: number;
  /** seconds */
  degraded_seconds: number;
  scope?: string;
}

export type Event =
  | TaskAppeared
  | TaskStatusChanged
  | JobStatusChanged
  | TaskProgress
  | TaskVanished
  | CallFinished
  | SourceDegraded
  | SourceRecovered;
