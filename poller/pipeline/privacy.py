"""Personal data (phone numbers, names) policy, applied before anything leaves the process."""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum

#: what :meth:`Privacy._hash` gives: hashed again it would change, so a value passing the policy
#: twice (a name kept in state, then published) is left as it is
_HASHED = re.compile(r"h:[0-9a-f]{20}").fullmatch


class PersonalDataPolicy(StrEnum):
    KEEP = "keep"
    MASK = "mask"
    HASH = "hash"


class Privacy:
    """Turns personal values into what the configured policy lets us publish."""

    def __init__(self, policy: PersonalDataPolicy = PersonalDataPolicy.MASK, salt: str = "") -> None:
        self.policy = policy
        self._salt = salt.encode()

    def __repr__(self) -> str:
        return f"Privacy(policy={self.policy.value!r})"

    def _hash(self, value: str) -> str:
        if _HASHED(value):
            return value
        return "h:" + hmac.new(self._salt, value.encode(), hashlib.sha256).hexdigest()[:20]

    def phone(self, value: str | None) -> str | None:
        if value is None or self.policy is PersonalDataPolicy.KEEP:
            return value
        if self.policy is PersonalDataPolicy.HASH:
            return self._hash(value)
        return mask_phone(value)

    def name(self, value: str | None) -> str | None:
        if value is None or self.policy is PersonalDataPolicy.KEEP:
            return value
        if self.policy is PersonalDataPolicy.HASH:
            return self._hash(value)
        return value[:1] + "*" * max(1, len(value) - 1) if value else value


def mask_phone(value: str) -> str:
    """Keep the first three and last two characters (as vendors' consoles do), star the rest."""
    if len(value) <= 5:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]
