"""Degradation episodes carry their scope and last from the first failed request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from poller.pipeline.health import health_transition
from poller.pipeline.identity import SourceId
from poller.pipeline.redact import Redactor
from poller.pipeline.state import SourceState, apply_published
from schemas import SourceDegraded, SourceRecovered

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_two_scopes_of_one_account_give_pairs_that_can_be_matched() -> None:
    events = []
    for scope in ("1400000001", "1400000002"):
        source = SourceId(vendor="tencent-ccc", account="main", scope=scope)
        health, degraded = health_transition(source, SourceState().health, ("api", "timeout", "x"), NOW)
        _, recovered = health_transition(source, health, None, NOW + timedelta(seconds=5))
        events += degraded + recovered
    pairs = {(e.scope, e.episode, type(e).__name__) for e in events}
    assert pairs == {
        (scope, 1, kind)
        for scope in ("1400000001", "1400000002")
        for kind in ("SourceDegraded", "SourceRecovered")
    }


def test_degraded_seconds_count_from_the_first_failed_request_not_the_end_of_the_cycle() -> None:
    source = SourceId(vendor="byrobot", account="main", scope="1")
    first_request = NOW - timedelta(seconds=12)  # retries and backoff took 12 s before the cycle ended
    health, (degraded,) = health_transition(
        source, SourceState().health, ("api", "timeout", "x"), NOW, first_request
    )
    assert isinstance(degraded, SourceDegraded) and degraded.first_failed_at == first_request
    _, (recovered,) = health_transition(source, health, None, NOW + timedelta(seconds=3))
    assert isinstance(recovered, SourceRecovered) and recovered.degraded_seconds == 15.0


def test_replayed_degradation_keeps_the_first_failure_time() -> None:
    source = SourceId(vendor="byrobot", account="main", scope="1")
    first_request = NOW - timedelta(seconds=12)
    _, (degraded,) = health_transition(
        source, SourceState().health, ("api", "timeout", "x"), NOW, first_request
    )
    assert isinstance(degraded, SourceDegraded)
    state = SourceState()
    apply_published(
        state, degraded, 1, names=Redactor().kept
    )  # a restart between publish and commit rebuilds it so
    _, (recovered,) = health_transition(source, state.health, None, NOW + timedelta(seconds=3))
    assert isinstance(recovered, SourceRecovered) and recovered.degraded_seconds == 15.0
