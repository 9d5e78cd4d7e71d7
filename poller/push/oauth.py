"""OAuth 2.0 client credentials for push senders that use it (Tencent CCC Data Push offers it).

The sender fetches a token from ``POST /push/oauth/<vendor>/<account>`` with its client id and
secret (HTTP basic or form fields, RFC 6749 §2.3.1), then pushes with ``Authorization: Bearer``.
Tokens are stateless: their expiry signed with a key derived from the client secret, so nothing is
stored and a restart or a second replica accepts the same tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import parse_qs

from poller.push.guard import basic_auth_matches

__all__ = ["ClientCredentials"]

TOKEN_SECONDS = 3600


class ClientCredentials:
    def __init__(self, scope: str, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self._key = hmac.new(
            client_secret.encode(), b"aicc-poller push token " + scope.encode(), hashlib.sha256
        ).digest()

    def client_authenticated(self, headers: Mapping[str, str], body: bytes) -> bool:
        """A token request with these client credentials and ``grant_type=client_credentials``."""
        try:
            form = parse_qs(body.decode("ascii"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return False
        if form.get("grant_type") != ["client_credentials"]:
            return False
        if basic_auth_matches(headers.get("Authorization"), self.client_id, self._secret):
            return True
        given_id = form.get("client_id", [""])[0].encode()
        given_secret = form.get("client_secret", [""])[0].encode()
        return hmac.compare_digest(given_id, self.client_id.encode()) & hmac.compare_digest(
            given_secret, self._secret.encode()
        )

    def issue(self, now: float | None = None) -> tuple[str, int]:
        expiry = int(now if now is not None else time.time()) + TOKEN_SECONDS
        return f"{expiry}.{self._sign(expiry)}", TOKEN_SECONDS

    def bearer_valid(self, header: str | None, now: float | None = None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expiry_text, _, signature = header[7:].strip().partition(".")
        if not expiry_text.isdigit() or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        if expiry < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(signature, self._sign(expiry))

    def _sign(self, expiry: int) -> str:
        return hmac.new(self._key, str(expiry).encode(), hashlib.sha256).hexdigest()
