"""NATS decentralized auth for tests: an operator, an account and users as ed25519-nkey JWTs.

A JWT here is ``header.claims.signature``, each part base64url without padding; the header names
the ``ed25519-nkey`` algorithm, the claims say who issued them (``iss``, a public NKey) for whom
(``sub``), and the issuer's NKey signs the first two parts. An operator signs itself and its
accounts, an account signs its users; the server trusts the operator it is configured with and
learns the accounts from ``resolver_preload``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from typing import Any

import msgspec
import nkeys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
#: no limit on anything, JetStream included (a zero storage limit would leave it off)
UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}


class Key:
    """A fresh NKey pair of one kind (``nkeys.PREFIX_BYTE_*``)."""

    def __init__(self, prefix: int) -> None:
        self.seed: bytes = nkeys.encode_seed(os.urandom(32), prefix)
        self._pair = nkeys.from_seed(bytearray(self.seed))
        self.public: str = self._pair.public_key.decode()

    def sign(self, data: bytes) -> bytes:
        return bytes(self._pair.sign(data))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode(issuer: Key, subject: str, name: str, nats: dict[str, Any], *, issued: int | None = None) -> str:
    """A signed JWT; ``jti`` is a hash of the other claims, so two tokens never share one."""
    claims: dict[str, Any] = {
        "iat": int(time.time()) if issued is None else issued,
        "iss": issuer.public,
        "sub": subject,
        "name": name,
        "nats": {**nats, "version": 2},
    }
    claims["jti"] = (
        base64.b32encode(hashlib.sha256(msgspec.json.encode(claims)).digest()).decode().rstrip("=")
    )
    signing_input = f"{_b64(msgspec.json.encode(HEADER))}.{_b64(msgspec.json.encode(claims))}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


class Operator:
    """An operator with one account: the server configuration that trusts them, and its users."""

    def __init__(self, revoked: dict[str, int] | None = None) -> None:
        self.key = Key(nkeys.PREFIX_BYTE_OPERATOR)
        self.account = Key(nkeys.PREFIX_BYTE_ACCOUNT)
        #: the server's own account: JetStream does not start in operator mode without one
        self.system = Key(nkeys.PREFIX_BYTE_ACCOUNT)
        operator = {"type": "operator", "system_account": self.system.public}
        self.jwt = encode(self.key, self.key.public, "test-operator", operator)
        account: dict[str, Any] = {"type": "account", "limits": UNLIMITED}
        if revoked:
            account["revocations"] = revoked  # user public key -> JWTs issued up to then are refused
        self.account_jwt = encode(self.key, self.account.public, "test-account", account)
        self.system_jwt = encode(self.key, self.system.public, "SYS", {"type": "account"})

    def server_config(self) -> str:
        """nats-server configuration text (for :class:`~poller.tools.natsserver.NatsServer`)."""
        return (
            f'operator: "{self.jwt}"\n'
            f'system_account: "{self.system.public}"\n'
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f'  "{self.account.public}": "{self.account_jwt}"\n'
            f'  "{self.system.public}": "{self.system_jwt}"\n'
            "}\n"
        )


def user_creds(
    account: Key, name: str = "poller", *, user: Key | None = None, issued: int | None = None
) -> str:
    """A ``.creds`` file's text for a new user of ``account`` (or of the given ``user`` key)."""
    user = user or Key(nkeys.PREFIX_BYTE_USER)
    nats = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
    token = encode(account, user.public, name, nats, issued=issued)
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{token}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
