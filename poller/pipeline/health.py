"""A source's degradation episodes: one ``source-degraded`` when one starts, one recovered when it ends."""

from __future__ import annotations

from datetime import datetime

from poller.pipeline.identity import SourceId, event_id
from poller.pipeline.state import Health
from schemas import DegradeReason, EventBase, SourceDegraded, SourceRecovered

__all__ = ["health_transition"]


def health_transition(
    source: SourceId,
    health: Health,
    failure: tuple[str, str, str] | None,
    now: datetime,
    failed_since: datetime | None = None,
) -> tuple[Health, list[EventBase]]:
    """One ``source-degraded`` when an episode starts, one ``source-recovered`` when it ends.

    ``failure`` is (api, reason, detail) of a failed poll cycle, or None for a good one;
    ``failed_since`` is when that cycle's failed request was first tried (``now`` if unknown): an
    episode lasts from there. Both events carry the source's scope, so two SdkAppIds or job groups
    of one account are told apart.
    """
    ts = now.timestamp()
    if failure is not None and not health.degraded:
        api, reason, detail = failure
        episode = health.episode + 1
        since = min(failed_since, now) if failed_since is not None else now
        event = SourceDegraded(
            event_id=event_id(source.key, "degraded", episode),
            api=api,
            reason=DegradeReason(reason),
            detail=detail,
            episode=episode,
            scope=source.scope,
            first_failed_at=since,
            vendor=source.vendor,
            account=source.account,
            observed_at=now,
        )
        started = since.timestamp()
        return Health(episode=episode, degraded=True, api=api, reason=reason, since=started), [event]
    if failure is None and health.degraded:
        event_r = SourceRecovered(
            event_id=event_id(source.key, "recovered", health.episode),
            api=health.api,
            episode=health.episode,
            degraded_seconds=round(max(0.0, ts - health.since), 3),
            scope=source.scope,
            vendor=source.vendor,
            account=source.account,
            observed_at=now,
        )
        return Health(episode=health.episode, degraded=False), [event_r]
    return health, []
