"""Ownership of sources by leases in NATS KV: replicas join and leave without configuration.

Every replica keeps a member key alive in a bucket whose entries expire after the lease TTL, and
computes each source's owner by rendezvous hashing over the live members, so sources spread
evenly and only the sources of a replica that joined or left move. The owner holds a lease key
for the source (create, then compare-and-set renewals); a replica that dies stops renewing and
its leases expire with the TTL. A replica that is no longer a source's owner (a member joined)
or that stops (SIGTERM) finishes the cycle, lets its committer flush, and writes the lease back
as released with the time; the next owner waits one rate-limit window after that time before its
first request, so two owners never spend one credential in the same second.

A limit that covers an API for every caller together (a fleet budget) is split between the replicas
that spend it. A replica spends such a limit only once it has *joined* it: its member record names
the limit, it has read every other record after writing its own, and each replica that spends the
limit too has written a record saying it read ours (``as_of``, a revision of the members bucket, so
no clock is compared), plus one rate-limit window for the requests they sent before. Any account
that needs the limit waits for that join; a join NATS cannot complete is tried again, and nothing of
the limit is spent meanwhile.

A member or lease record NATS refuses for lack of permission on its subject fails at once
(:mod:`poller.pipeline.nats_denials`), not after a timeout, and is reported as a ``member record``
or ``lease`` fault (``on_fault``) until a write of that kind is accepted again.

Leases decide who polls; the fenced state commits (:class:`~poller.pipeline.store.StateFenced`)
decide who writes, so even a replica that wrongly believes it owns a source cannot overwrite the
state of the one that does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from poller.pipeline.nats_denials import Denials, SubjectDenied, guarded, kv_subject_prefix
from poller.pipeline.nats_faults import PermanentFault, permanent_fault
from poller.runtime.kv_keys import kv_keys

__all__ = [
    "HANDOVER_WINDOW",
    "Budget",
    "LeaseRecord",
    "MemberRecord",
    "Ownership",
    "rendezvous_owner",
    "unique_replica_id",
]

log = logging.getLogger("poller.runtime.leases")
T = TypeVar("T")
#: the operations a refused record is reported as (``aicc_nats_refusals_total``, /readyz)
MEMBER_WRITE, LEASE_WRITE = "member record", "lease"

#: how long after a release the next owner waits: one rate-limit window and a margin
HANDOVER_WINDOW = 1.2
#: seconds between looks at the peers' records while joining a fleet budget
JOIN_POLL = 0.1
#: seconds before a join NATS could not finish is tried again
JOIN_RETRY = 0.2


class MemberRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a member key: when it was refreshed, and the fleet-wide limits it spends."""

    seen: float
    #: ``vendor/api`` of every fleet-wide limit this replica's accounts use
    budgets: list[str] = []
    #: a members-bucket revision whose records, and every older one, this replica's shares count:
    #: it wrote its own record there and read all the others after it (unset: none yet, or an
    #: older replica that does not say)
    as_of: int = 0


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a lease key: who holds it, or since when nobody does."""

    owner: str
    released_at: float = 0.0


_encode = msgspec.json.Encoder().encode
_decode_lease = msgspec.json.Decoder(LeaseRecord).decode
_decode_member = msgspec.json.Decoder(MemberRecord).decode

Budget = tuple[str, str]
"""(vendor, api) of a limit that covers every caller of the API together."""


def _budget(text: str) -> Budget:
    vendor, api = text.split("/", 1)
    return vendor, api


def unique_replica_id() -> str:
    """Host, process and a random part: unique even for several replicas on one host."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def rendezvous_owner(key: str, members: set[str]) -> str:
    """The member with the highest hash for ``key`` (highest-random-weight hashing)."""
    return max(
        members, key=lambda member: hashlib.blake2b(f"{member}\x1f{key}".encode(), digest_size=8).digest()
    )


def _lease_key(account_key: str) -> str:
    return f"lease.{account_key}"


class Ownership:
    """This replica's view of the membership and the leases it holds."""

    def __init__(
        self,
        members_kv: Any,
        leases_kv: Any,
        replica_id: str,
        ttl: float,
        *,
        budgets_of: Callable[[str], frozenset[Budget]] = lambda _account: frozenset(),
        apply_shares: Callable[[dict[Budget, float]], None] = lambda _shares: None,
        denials: Denials | None = None,
        on_fault: Callable[[str, PermanentFault | None], None] | None = None,
    ) -> None:
        """``budgets_of`` names the fleet-wide limits an account's sources spend; ``apply_shares``
        gets this replica's part of each (1 / the replicas that spend it); ``on_fault`` is told
        (operation, fault) when NATS refuses a record for lack of permission, (operation, None)
        once one is accepted again."""
        self._denials = denials
        self._on_fault = on_fault
        #: the records NATS refuses now, by operation and key
        self._refused: dict[str, dict[str, PermanentFault]] = {}
        self._budgets_of = budgets_of
        self._apply_shares = apply_shares
        #: fleet-wide limits every other live member spends, from its member record
        self._others_budgets: dict[str, set[Budget]] = {}
        #: peers seen starting to spend a limit we spend, by the revision of that record: they wait
        #: for a record of ours whose ``as_of`` covers it
        self._unacknowledged: dict[str, int] = {}
        #: the members-bucket revision our shares count (see ``MemberRecord.as_of``)
        self._as_of = 0
        #: the revision of our record whose refresh set the shares in force
        self._applied = 0
        #: the share of each fleet limit in force here, and since when a larger one is due
        self._shares: dict[Budget, float] = {}
        self._raising_since: dict[Budget, float] = {}
        #: fleet limits joined (when their first request may go), and the joins under way
        self._joined: dict[Budget, float] = {}
        self._joining: dict[Budget, anyio.Event] = {}
        self._members_kv = members_kv
        self._leases_kv = leases_kv
        self.replica_id = replica_id
        self.ttl = ttl
        self.members: set[str] = {replica_id}
        self._revisions: dict[str, int] = {}
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._changed = anyio.Event()
        self._left = False

    async def _write(self, what: str, kv: Any, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """A write of a member or lease record, failed at once when NATS refuses its subject."""
        prefix = kv_subject_prefix(kv)
        refused = self._refused.setdefault(what, {})
        try:
            result = await guarded(self._denials, None if prefix is None else prefix + key, call)
        except SubjectDenied as exc:
            fault = refused[key] = permanent_fault(exc) or PermanentFault(code="permission", detail=f"{exc}")
            if self._on_fault is not None:
                self._on_fault(what, fault)
            raise
        # the fault lasts while any record of the kind is refused (permissions are per subject)
        if refused.pop(key, None) is not None and not refused and self._on_fault is not None:
            self._on_fault(what, None)
        return result

    @property
    def refresh_every(self) -> float:
        return self.ttl / 3

    # -- membership -------------------------------------------------------------------------------
    @property
    def membership_period(self) -> float:
        return min(self.refresh_every, 2.0)

    def my_budgets(self) -> set[Budget]:
        return {budget for account in self._held for budget in self._budgets_of(account)}

    async def _announce(self) -> int:
        """Write our member record; returns its revision in the members bucket."""
        record = MemberRecord(
            seen=time.time(),
            budgets=sorted(f"{v}/{a}" for v, a in self.my_budgets()),
            as_of=self._as_of,
        )
        key, kv = f"member.{self.replica_id}", self._members_kv
        return int(await self._write(MEMBER_WRITE, kv, key, partial(kv.put, key, _encode(record))))

    async def _refresh(self) -> int | None:
        """Write our record, read everyone's and set our shares from them; returns our record's
        revision (None once we left). The read starts after our write is stored, so it sees every
        record older than ours: that revision is what our next record says our shares count.
        Refreshes may overlap (a join does not wait for the periodic one): the result of one whose
        write is older than that of the last one applied is dropped, so the shares in force always
        come from the newest read."""
        written = None if self._left else await self._announce()
        found, others = await self._read_members()
        if written is not None:
            if written < self._applied:
                return written
            self._applied = written
        mine = self.my_budgets()
        for member, (spent, revision) in others.items():
            if (spent - self._others_budgets.get(member, set())) & mine:
                self._unacknowledged[member] = revision
        for member in set(self._unacknowledged) - set(others):
            del self._unacknowledged[member]
        self._others_budgets = {member: spent for member, (spent, _) in others.items()}
        self._update_members(found)
        self._share_budgets()
        if written is None:
            return None
        self._as_of = max(self._as_of, written)
        due = [m for m, revision in self._unacknowledged.items() if revision <= written]
        if due:
            # a peer joining a limit we spend waits for this: tell it now, not a period later
            for member in due:
                del self._unacknowledged[member]
            await self._announce()
        return written

    async def keep_membership(self) -> None:
        """Refresh our member key and read everyone's, until cancelled."""
        while True:
            try:
                await self._refresh()
            except Exception as exc:  # NATS is down: keep the last view, leases stop renewing anyway
                log.warning("membership refresh failed", extra={"error": type(exc).__name__})
            await anyio.sleep(self.membership_period)

    async def _read_members(self) -> tuple[set[str], dict[str, tuple[set[Budget], int]]]:
        """The live members (us included until we left), and the fleet limits each other one
        spends with the revision of the record that says so."""
        found: set[str] = set()
        others: dict[str, tuple[set[Budget], int]] = {}
        for key in await kv_keys(self._members_kv, "member."):
            member = key.removeprefix("member.")
            if member == self.replica_id:
                continue
            try:
                entry = await self._members_kv.get(key)
            except KeyNotFoundError:
                continue  # left (its delete marker is listed), or gone meanwhile
            found.add(member)
            try:
                record = _decode_member(entry.value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # an older replica's record: live, but it spends nothing we know of
            others[member] = ({_budget(b) for b in record.budgets if "/" in b}, int(entry.revision))
        if not self._left:
            found.add(self.replica_id)
        return found, others

    async def _join(self, budget: Budget) -> float | None:
        """Announce that we spend ``budget`` and wait until every other replica spending it has
        written a record whose ``as_of`` covers ours; returns when our first request may go
        (``time.time()``), None once we left. Bounded by the TTL: a live peer that never says so (an
        older replica) has read the members several times by then."""
        announced = await self._refresh()
        if announced is None:
            return None
        text = f"{budget[0]}/{budget[1]}"
        waiting = {m for m, spent in self._others_budgets.items() if budget in spent}
        deadline = time.monotonic() + self.ttl
        while waiting and time.monotonic() < deadline:
            await anyio.sleep(JOIN_POLL)
            if self._left:
                return None
            for member in sorted(waiting):
                try:
                    record = _decode_member((await self._members_kv.get(f"member.{member}")).value)
                except (KeyNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
                    waiting.discard(member)  # gone, or unreadable as in the membership read
                    continue
                if record.as_of >= announced or text not in record.budgets:
                    waiting.discard(member)
        # their requests from before their smaller share, and those of a replica that stopped
        # spending the limit just before we read, still count in the vendor's window
        return time.time() + HANDOVER_WINDOW

    async def _joined_at(self, budget: Budget) -> float | None:
        """When ``budget`` may be spent here: as joined, or once the join under way (or ours) ends."""
        while budget not in self._joined:
            joining = self._joining.get(budget)
            if joining is not None:
                await joining.wait()  # if that join failed, the loop tries again here
                continue
            joining = self._joining[budget] = anyio.Event()
            try:
                joined = await self._join(budget)
                if joined is None:
                    return None
                self._joined[budget] = joined
            finally:
                del self._joining[budget]
                joining.set()
        return self._joined[budget]

    def _share_budgets(self) -> None:
        """A smaller share is taken at once; a larger one only after one window, so the requests of
        a replica that just stopped spending the limit have left the vendor's window first."""
        mine = self.my_budgets()
        spent_by_others = [b for budgets in self._others_budgets.values() for b in budgets]
        now = time.monotonic()
        shares: dict[Budget, float] = {}
        for budget in mine:
            target = 1.0 / (1 + spent_by_others.count(budget))
            current = self._shares.get(budget, target)
            if target > current and now - self._raising_since.setdefault(budget, now) < HANDOVER_WINDOW:
                target = current  # not yet: the one that stopped spending it may still count
            else:
                self._raising_since.pop(budget, None)
            shares[budget] = self._shares[budget] = target
        self._apply_shares(shares)

    def _update_members(self, members: set[str]) -> None:
        if members != self.members:
            log.info(
                "replica membership changed", extra={"members": len(members), "replica": self.replica_id}
            )
            self.members = members
            self._changed.set()
            self._changed = anyio.Event()

    async def membership_changed(self) -> None:
        await self._changed.wait()

    def should_own(self, account_key: str) -> bool:
        return not self._left and rendezvous_owner(account_key, self.members) == self.replica_id

    async def leave(self) -> None:
        """Stop claiming anything; the others see our member key gone at their next refresh."""
        self._left = True
        try:
            key, kv = f"member.{self.replica_id}", self._members_kv
            await self._write(MEMBER_WRITE, kv, key, partial(kv.delete, key))
        except Exception as exc:
            log.warning("could not remove our member key", extra={"error": type(exc).__name__})

    # -- leases ----------------------------------------------------------------------------------
    # One lease per account, not per source: every source of an account spends the same
    # credentials' limits, so they must all be polled by one replica.

    async def hold(self, account_key: str) -> float | None:
        """Join (or take) the account's lease; returns when polling may start (``time.time()``), or
        None when another replica holds it. Every successful ``hold`` needs a ``release``."""
        # the sources of one account ask at once: one request to NATS, the others join its answer
        async with self._locks.setdefault(account_key, anyio.Lock()):
            held = self._held.get(account_key)
            if held is not None:
                if held.lost.is_set():
                    return None  # the other sources of the account are still letting go of it
                held.holders += 1
                return held.start_at
            start_at = await self._try_acquire(account_key)
            if start_at is None:
                return None
            held = self._held[account_key] = _Held(start_at=start_at, renewed=time.monotonic())
            try:
                joined = await self._join_all(account_key, held)
            except BaseException:
                await self._give_back(account_key)
                raise
            if joined is None:
                await self._give_back(account_key)
                return None
            held.start_at = max(start_at, joined)
            return held.start_at

    async def _join_all(self, account_key: str, held: _Held) -> float | None:
        """When the account may spend the fleet-wide limits it uses: each is joined first, also when
        another account is joining it right now. A join NATS cannot finish is tried again while the
        lease stays ours, so nothing of a limit is spent unjoined; None once the lease is lost or we
        left."""
        start_at = 0.0
        for budget in sorted(self._budgets_of(account_key)):
            while True:
                if self._left or held.lost.is_set():
                    return None
                try:
                    joined = await self._joined_at(budget)
                except Exception as exc:
                    log.warning(
                        "cannot join a fleet budget yet",
                        extra={"budget": "/".join(budget), "error": type(exc).__name__},
                    )
                    await anyio.sleep(JOIN_RETRY)
                    continue
                if joined is None:
                    return None
                start_at = max(start_at, joined)
                break
        return start_at

    async def _give_back(self, account_key: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await self.release(account_key)

    def lost(self, account_key: str) -> anyio.Event:
        """Set when the account's lease is no longer ours (taken after it expired, or unrenewable)."""
        held = self._held.get(account_key)
        if held is None:
            lost = anyio.Event()
            lost.set()
            return lost
        return held.lost

    async def release(self, account_key: str) -> None:
        """Drop one holder; the last one hands the account over: the lease says released, and when."""
        held = self._held.get(account_key)
        if held is None:
            return
        held.holders -= 1
        if held.holders > 0:
            return
        del self._held[account_key]
        for budget in self._budgets_of(account_key) - self.my_budgets():
            # not spent here any more: spending it again is a new join (the others may have grown)
            self._joined.pop(budget, None)
            self._shares.pop(budget, None)
            self._raising_since.pop(budget, None)
        revision = self._revisions.pop(account_key, None)
        if revision is None or held.lost.is_set():
            return
        record = LeaseRecord(owner="", released_at=time.time())
        try:
            key, kv = _lease_key(account_key), self._leases_kv
            await self._write(LEASE_WRITE, kv, key, partial(kv.update, key, _encode(record), last=revision))
        except Exception as exc:  # it expires with the TTL anyway
            log.warning(
                "could not release a lease", extra={"account": account_key, "error": type(exc).__name__}
            )

    def held(self) -> list[str]:
        return sorted(self._held)

    def _fence(self, held: _Held) -> float:
        """When a lease not renewed since is let go (monotonic): a third of the TTL and more before
        it can expire, so its requests have left the vendor's window when another replica takes it."""
        return held.renewed + self.ttl * 0.8 - self.refresh_every

    async def keep_leases(self) -> None:
        """Renew every held lease, until cancelled; a lease not renewed for most of the TTL is lost,
        at its fence even while a renewal hangs (NATS stalled)."""
        while True:
            fences = [self._fence(held) for held in self._held.values() if not held.lost.is_set()]
            wait = min([self.refresh_every, *(fence - time.monotonic() for fence in fences)])
            await anyio.sleep(max(wait, 0.05))
            for account_key, held in list(self._held.items()):
                if held.lost.is_set():
                    continue
                fence, began = self._fence(held), time.monotonic()
                try:
                    with anyio.fail_after(max(0.0, fence - began)):
                        still_ours = await self._renew(account_key)
                except Exception as exc:  # NATS unreachable: ours until the fence
                    log.warning(
                        "lease renewal failed", extra={"account": account_key, "error": type(exc).__name__}
                    )
                    still_ours = time.monotonic() < fence
                else:
                    if still_ours:
                        held.renewed = began  # the TTL runs from the write, which came after this
                if not still_ours:
                    log.warning("lease lost; stopped polling the account", extra={"account": account_key})
                    held.lost.set()

    async def _try_acquire(self, account_key: str) -> float | None:
        key, kv = _lease_key(account_key), self._leases_kv
        mine = _encode(LeaseRecord(owner=self.replica_id))
        try:
            entry = await self._leases_kv.get(key)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None or not entry.value:
                created = await self._write(LEASE_WRITE, kv, key, partial(kv.create, key, mine))
                self._revisions[account_key] = int(created)
                # no record: never held, or expired; an owner whose renewals failed let go at least
                # a refresh (a third of the TTL) before it expired (keep_leases)
                return time.time()
            record = _decode_lease(entry.value)
            if record.owner not in ("", self.replica_id):
                return None
            updated = await self._write(
                LEASE_WRITE, kv, key, partial(kv.update, key, mine, last=entry.revision)
            )
            self._revisions[account_key] = int(updated)
            return record.released_at + HANDOVER_WINDOW if record.owner == "" else time.time()
        except (KeyWrongLastSequenceError, msgspec.DecodeError, msgspec.ValidationError):
            return None  # someone else was faster (or wrote something we cannot read): not ours

    async def _renew(self, account_key: str) -> bool:
        revision = self._revisions.get(account_key)
        if revision is None:
            return False
        try:
            key, kv, mine = (
                _lease_key(account_key),
                self._leases_kv,
                _encode(LeaseRecord(owner=self.replica_id)),
            )
            self._revisions[account_key] = int(
                await self._write(LEASE_WRITE, kv, key, partial(kv.update, key, mine, last=revision))
            )
            return True
        except KeyWrongLastSequenceError:
            self._revisions.pop(account_key, None)
            return False


class _Held:
    def __init__(self, start_at: float, renewed: float) -> None:
        self.start_at = start_at
        self.renewed = renewed
        self.holders = 1
        self.lost = anyio.Event()
