"""What the two Alibaba Cloud vendors share: the account fields, the signed RPC request, error classes.

Both OutboundBot and AICCS are RPC-style APIs: ``POST /`` with every parameter in the query string
and an empty body, exactly as the official SDKs send them. Signing follows ``signature`` in the
account config: ``v3`` (ACS3-HMAC-SHA256 in headers, the default of today's SDKs) or ``v1``
(HMAC-SHA1 with the common parameters in the query). Both carry a timestamp and a nonce, so the
request is re-signed for every attempt (:class:`SignedQuery`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Annotated, Literal, TypeVar

import msgspec
from yarl import URL

from poller.errors import AuthFailed, BadResponse, ClientError, ServerError, SourceError, Throttled
from poller.secrets import Secret
from poller.transport import Response
from poller.transport.ratelimit import SlidingWindowLimiter
from poller.vendors.alibaba_signing import v1_sign_query, v3_sign_headers
from poller.vendors.base import ENDPOINT_PATTERN, AccountConfig, NonEmpty, Source
from schemas.vendors.alibaba import ErrorBody, decoder

T = TypeVar("T")

log = logging.getLogger("poller.vendors.alibaba")

SignatureChoice = Literal["v3", "v1"]

#: codes that mean "these credentials are not accepted" rather than "this request is wrong".
#: PermissionInsufficient is AICCS's RAM denial (the Forbidden.* of other products).
_AUTH_CODES = frozenset({"SignatureDoesNotMatch", "IncompleteSignature", "PermissionInsufficient"})
_AUTH_PREFIXES = ("InvalidAccessKeyId", "Forbidden", "InvalidSecurityToken")
#: the message of a vendor error is kept short in our errors (and so in events and logs)
_MESSAGE_LIMIT = 160


class AlibabaAccount(AccountConfig, frozen=True, kw_only=True):
    """The credential part every Alibaba Cloud account config shares."""

    access_key_id: NonEmpty
    access_key_secret: Secret
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]+$")] = "cn-shanghai"
    #: ``v3`` = ACS3-HMAC-SHA256 (the SDKs' default), ``v1`` = HMAC-SHA1 RPC signature
    signature: SignatureChoice = "v3"
    #: when empty, the product's public endpoint (``default_endpoint`` of each vendor's account)
    endpoint: Annotated[str, msgspec.Meta(pattern=f"^$|{ENDPOINT_PATTERN}")] = ""


class SignedQuery(Mapping[str, str]):
    """The query string of one RPC request, re-signed by ``prepare`` before every attempt.

    :meth:`poller.vendors.base.Source.send` takes the query once but awaits ``prepare`` per
    attempt, before the request goes out; V1 keeps its Timestamp, SignatureNonce and Signature in
    the query, so ``prepare`` refreshes this mapping in place and each attempt carries a fresh nonce.
    """

    def __init__(self, params: Mapping[str, str]) -> None:
        self._params = dict(params)
        self._current = dict(params)

    def replace(self, signed: Mapping[str, str]) -> None:
        self._current = dict(signed)

    @property
    def params(self) -> Mapping[str, str]:
        return self._params

    def __getitem__(self, key: str) -> str:
        return self._current[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current)

    def __len__(self) -> int:
        return len(self._current)


Prepare = Callable[[], Awaitable[tuple[Mapping[str, str], bytes | None]]]


class RpcSigner:
    """Signs RPC requests of one product version with one access key."""

    def __init__(
        self,
        *,
        endpoint: str,
        version: str,
        access_key_id: str,
        access_key_secret: Secret,
        signature: SignatureChoice,
    ) -> None:
        url = URL(endpoint if "://" in endpoint else f"https://{endpoint}")
        self.url = str(url.with_path("/").with_query(None))
        #: the Host header we send and sign (aiohttp would drop a default port; we send it as given)
        self.host = url.raw_authority
        self.version = version
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.signature = signature

    def request(self, action: str, params: Mapping[str, str]) -> tuple[SignedQuery, Prepare]:
        """The query to send and the per-attempt signing step for one call of ``action``."""
        query = SignedQuery(params)

        async def prepare() -> tuple[Mapping[str, str], bytes | None]:
            secret = self._secret.reveal()
            if self.signature == "v1":
                query.replace(
                    v1_sign_query(
                        params=query.params,
                        action=action,
                        version=self.version,
                        access_key_id=self.access_key_id,
                        access_key_secret=secret,
                    )
                )
                headers = {"host": self.host, "x-acs-version": self.version, "x-acs-action": action}
                return headers, None
            headers = v3_sign_headers(
                method="POST",
                path="/",
                query=query.params,
                host=self.host,
                action=action,
                version=self.version,
                access_key_id=self.access_key_id,
                access_key_secret=secret,
                body=b"",
            )
            return headers, None

        return query, prepare


# -- errors -----------------------------------------------------------------------------------------------
_decode_error = decoder(ErrorBody)


async def call_rpc(
    source: Source,
    signer: RpcSigner,
    limiter: SlidingWindowLimiter,
    parse: Callable[[Response], T],
    action: str,
    request: msgspec.Struct,
) -> T:
    """One RPC-style call: every API parameter in the query string, signed afresh per attempt.

    ``parse`` classifies and decodes inside the attempt, so an undecodable answer is retried.
    """
    params = {k: str(v) for k, v in msgspec.structs.asdict(request).items() if v is not None}
    query, prepare = signer.request(action, params)
    return await source.send(action, limiter, "POST", signer.url, parse=parse, prepare=prepare, params=query)


def error_for(code: str, message: str, status: int, api: str) -> SourceError:
    """The vendor's error code → our classification (alerting routes on the class)."""
    detail = f"{code or 'no code'} (HTTP {status}): {message[:_MESSAGE_LIMIT]}"
    if code.startswith("Throttling"):
        return Throttled(detail, api=api)
    if code in _AUTH_CODES or code.startswith(_AUTH_PREFIXES):
        return AuthFailed(detail, api=api)
    if code.startswith(("InternalError", "ServiceUnavailable")) or status >= 500:
        return ServerError(detail, api=api)
    return ClientError(detail, api=api)


def classifier(api: str) -> Callable[[Response], None]:
    """``classify`` for :meth:`Source.send`: any 4xx/5xx with the vendor's error body raises."""

    def classify(resp: Response) -> None:
        if resp.status < 400:
            if resp.status != 200:
                raise BadResponse(f"unexpected HTTP {resp.status}", api=api)
            return
        try:
            body = _decode_error.decode(resp.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if resp.status >= 500:
                raise ServerError(f"HTTP {resp.status} without an error body", api=api) from None
            raise BadResponse(f"HTTP {resp.status} without an error body", api=api) from None
        raise error_for(body.Code, body.Message, resp.status, api)

    return classify


def check_envelope(
    api: str, *, success: bool | None, code: str | None, message: str | None, http_status: int | None
) -> None:
    """A 200 answer can still say ``Success: false`` (OutboundBot keeps the real status in the body)."""
    if success is False or (code not in (None, "", "OK", "200")):
        raise error_for(code or "", message or "", http_status or 200, api)
