"""What a configuration reload (SIGHUP) changes: sources to stop, to start, and what waits for a restart.

Sources are compared per account (vendor and account name): one that is gone or disabled or no
longer in this shard stops, one that is new starts, one whose settings differ restarts. The NATS
connection, the ops port, privacy and logging are set up once per process, so a change there is
only reported: it takes effect on the next restart.
"""

from __future__ import annotations

import msgspec

from poller.config import Config
from poller.runtime.sharding import owns
from poller.vendors.base import AccountConfig

__all__ = ["ReloadPlan", "plan_reload", "running_part"]

AccountKey = tuple[str, str]


class ReloadPlan(msgspec.Struct, frozen=True, kw_only=True):
    stop: list[AccountKey]
    start: list[AccountConfig]
    #: top-level sections whose change a reload does not apply
    needs_restart: list[str]

    @property
    def empty(self) -> bool:
        return not self.stop and not self.start


_SET_UP_ONCE = ("nats", "http", "privacy", "logging", "coordination")


def _owned(config: Config) -> dict[AccountKey, AccountConfig]:
    """The accounts this replica runs loops for: all enabled ones with leases (the leases decide
    who polls), this shard's with the static split."""
    shard, static = config.shard, config.coordination.mode == "static"
    return {
        (account.vendor, account.account): account
        for account in config.sources
        if account.enabled and (not static or owns(account.vendor, account.account, shard.index, shard.count))
    }


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Accounts removed or changed are stopped; accounts added or changed are started (after)."""
    before, after = _owned(running), _owned(new)
    stop = [key for key, account in before.items() if after.get(key) != account]
    start = [account for key, account in after.items() if before.get(key) != account]
    needs_restart = [name for name in _SET_UP_ONCE if getattr(running, name) != getattr(new, name)]
    return ReloadPlan(stop=stop, start=start, needs_restart=needs_restart)


def running_part(running: Config, new: Config) -> Config:
    """The configuration in force after a reload: the new sources, the old set-up-once sections."""
    kept = {name: getattr(running, name) for name in _SET_UP_ONCE}
    return msgspec.structs.replace(new, **kept)
