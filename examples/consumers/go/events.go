// The aicc-poller event contract in Go (schema version 2).
// Written from schemas/events.schema.json; tests/schemas/test_consumers.py checks that every event
// and JSON field here is the schema's, and that optional fields are pointers or omitempty.
package main

// Status is a normalized state and the vendor's raw value it came from.
type Status struct {
	State string `json:"state"`
	Raw   string `json:"raw"`
}

// CallDetail is BYRobot's optional call log enrichment.
type CallDetail struct {
	Turns    *int              `json:"turns,omitempty"`
	HungUpBy *string           `json:"hung_up_by,omitempty"`
	Results  map[string]string `json:"results,omitempty"`
}

// Base holds the fields every event carries. ObservedAt and the call times are RFC 3339 strings.
type Base struct {
	Type          string `json:"type"`
	SchemaVersion *int   `json:"schema_version,omitempty"`
	EventID       string `json:"event_id"`
	Vendor        string `json:"vendor"`
	Account       string `json:"account"`
	ObservedAt    string `json:"observed_at"`
}

// Entity holds the fields of task, job and job group events.
type Entity struct {
	Base
	Kind     string  `json:"kind"`
	EntityID string  `json:"entity_id"`
	ParentID *string `json:"parent_id,omitempty"`
	Name     *string `json:"name,omitempty"`
	Seq      int     `json:"seq"`
}

type TaskAppeared struct {
	Entity
	Current          Status `json:"current"`
	Completed        *int   `json:"completed,omitempty"`
	Total            *int   `json:"total,omitempty"`
	InitialInventory *bool  `json:"initial_inventory,omitempty"`
}

type TaskStatusChanged struct {
	Entity
	Previous Status `json:"previous"`
	Current  Status `json:"current"`
}

type JobStatusChanged struct {
	Entity
	Previous Status `json:"previous"`
	Current  Status `json:"current"`
}

type TaskProgress struct {
	Entity
	PreviousCompleted *int           `json:"previous_completed"`
	Completed         int            `json:"completed"`
	Total             *int           `json:"total"`
	ByState           map[string]int `json:"by_state,omitempty"`
}

type TaskVanished struct {
	Entity
	Previous Status `json:"previous"`
}

type CallFinished struct {
	Base
	CallID          string      `json:"call_id"`
	TaskID          string      `json:"task_id"`
	Outcome         string      `json:"outcome"`
	RawOutcome      string      `json:"raw_outcome"`
	FailureReason   *string     `json:"failure_reason,omitempty"`
	CalleeNumber    *string     `json:"callee_number,omitempty"`
	CalleeName      *string     `json:"callee_name,omitempty"`
	DurationSeconds *int        `json:"duration_seconds,omitempty"`
	StartedAt       *string     `json:"started_at,omitempty"`
	EndedAt         *string     `json:"ended_at,omitempty"`
	Detail          *CallDetail `json:"detail,omitempty"`
	VendorCallID    *string     `json:"vendor_call_id,omitempty"`
	CallerNumber    *string     `json:"caller_number,omitempty"`
	TalkSeconds     *int        `json:"talk_seconds,omitempty"`
	RingSeconds     *int        `json:"ring_seconds,omitempty"`
	LearnedBy       string      `json:"learned_by,omitempty"`
}

type SourceDegraded struct {
	Base
	API     string `json:"api"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
	Episode int    `json:"episode"`
	// SdkAppId, job group, company id, or "" for a whole account
	Scope string `json:"scope,omitempty"`
	// when the episode's first failed request was sent (RFC 3339)
	FirstFailedAt *string `json:"first_failed_at,omitempty"`
}

type SourceRecovered struct {
	Base
	API             string  `json:"api"`
	Episode         int     `json:"episode"`
	DegradedSeconds float64 `json:"degraded_seconds"`
	Scope           string  `json:"scope,omitempty"`
}
