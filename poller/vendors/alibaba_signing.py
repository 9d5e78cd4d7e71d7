"""Alibaba Cloud request signatures: V1 (RPC, HMAC-SHA1) and V3 (ACS3-HMAC-SHA256).

The signers serve the adapters and the verifiers serve the local simulators, so one module holds both
sides of the same canonicalization and they cannot drift apart. The official Python SDK
(alibabacloud-tea-openapi 0.4.6) is the reference: tests compare our output with it on random input.
Where clients disagree (a V3 query key percent-encoded or not, an empty value written as ``k=`` or
``k``, the path encoded or not), the verifier accepts every reading, because a real client may send any
of them; the signer always produces the official SDK's reading.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote, unquote

import msgspec

V3_ALGORITHM = "ACS3-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Alibaba rejects a request whose timestamp is further than this from the server's clock
MAX_SKEW = timedelta(minutes=15)

SecretLookup = Callable[[str], str | None]
#: ``None`` values are dropped, as the SDK drops them, so optional API parameters can be passed as is
Params = Mapping[str, str | None]

V1_REQUIRED = (
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
)
V3_REQUIRED_HEADERS = ("host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")


def _pct(text: str) -> str:
    """RFC 3986 as Alibaba uses it: only A-Z a-z 0-9 - _ . ~ stay, so space is %20 and * is %2A."""
    return quote(text, safe="~")


def _utc(now: datetime | None) -> datetime:
    """A naive ``now`` is taken as UTC, as the SDK's ``datetime.utcnow()`` is."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _timestamp(now: datetime | None) -> str:
    return _utc(now).strftime(TIMESTAMP_FORMAT)


def _one_secret(secret: str | None, access_key_secret: str | None) -> str:
    """``access_key_secret=`` is the older keyword, still used by the adapters' call sites."""
    if secret is not None and access_key_secret is None:
        return secret
    if access_key_secret is not None and secret is None:
        return access_key_secret
    raise TypeError("pass exactly one of secret= and access_key_secret=")


def _same(ours: str, theirs: str) -> bool:
    """Constant time, and safe for non-ASCII input (``compare_digest`` raises on non-ASCII str)."""
    return hmac.compare_digest(ours.encode(), theirs.encode())


# -- V1 ---------------------------------------------------------------------------------------------------
def v1_string_to_sign(params: Params, method: str) -> str:
    """Keys and values are encoded, joined, then the whole string is encoded once more."""
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()) if v is not None)
    return f"{method.upper()}&%2F&{_pct(canonical)}"


def v1_signature(params: Params, method: str, secret: str) -> str:
    """The ``&`` after the secret is the empty token secret of the OAuth-1 style this scheme copies."""
    digest = hmac.new((secret + "&").encode(), v1_string_to_sign(params, method).encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def v1_sign_query(
    params: Params,
    *,
    access_key_id: str,
    secret: str | None = None,
    method: str = "POST",
    now: datetime | None = None,
    nonce: str | None = None,
    action: str,
    version: str,
    access_key_secret: str | None = None,
) -> dict[str, str]:
    """The complete V1 query; common parameters win over API parameters of the same name."""
    key = _one_secret(secret, access_key_secret)
    query = {k: v for k, v in params.items() if v is not None and k != "Signature"}
    query.update(
        Action=action,
        Format="JSON",
        Version=version,
        Timestamp=_timestamp(now),
        SignatureNonce=nonce or uuid.uuid4().hex,
        SignatureMethod="HMAC-SHA1",
        SignatureVersion="1.0",
        AccessKeyId=access_key_id,
    )
    query["Signature"] = v1_signature(query, method, key)
    return query


# -- V3 ---------------------------------------------------------------------------------------------------
def v3_canonical_query(query: Params, *, quote_keys: bool = False, bare_empty: bool = False) -> str:
    """The SDK leaves keys raw and writes ``k=`` for an empty value; the flags give the other readings."""
    parts = []
    for key in sorted(k for k, v in query.items() if v is not None):
        value = query[key] or ""
        name = _pct(key) if quote_keys else key
        parts.append(name if bare_empty and not value else f"{name}={_pct(value)}")
    return "&".join(parts)


def _canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    """Names match case-insensitively; repeated names (a multidict, or keys differing in case) are
    joined with ``,`` in sorted order, as the SDK joins them."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items():
        grouped.setdefault(name.lower(), []).append(value.strip())
    return "".join(f"{name}:{','.join(sorted(grouped.get(name.lower(), [])))}\n" for name in signed_headers)


def v3_canonical_request(
    method: str,
    path: str,
    query: Params,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
    *,
    quote_keys: bool = False,
    bare_empty: bool = False,
) -> str:
    """``path`` goes in as given: the SDK signs its pathname unencoded, so callers choose the reading.

    The header block ends in a newline and is then joined with one, so a blank line precedes the
    SignedHeaders line; that is the SDK's layout and the signature depends on it.
    """
    return "\n".join(
        [
            method.upper(),
            path or "/",
            v3_canonical_query(query, quote_keys=quote_keys, bare_empty=bare_empty),
            _canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def v3_signature(canonical_request: str, secret: str) -> str:
    """Unlike V1, the key is the bare secret, and the result is hex rather than base64."""
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return hmac.new(secret.encode(), f"{V3_ALGORITHM}\n{digest}".encode(), hashlib.sha256).hexdigest()


def v3_authorization(access_key_id: str, signed_headers: Sequence[str], signature: str) -> str:
    """No spaces after the commas: byte-equal to what the SDK sends."""
    signed = ";".join(signed_headers)
    return f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={signature}"


def v3_sign_headers(
    *,
    method: str,
    path: str,
    query: Params,
    host: str,
    action: str,
    version: str,
    access_key_id: str,
    secret: str | None = None,
    body: bytes = b"",
    now: datetime | None = None,
    nonce: str | None = None,
    access_key_secret: str | None = None,
) -> dict[str, str]:
    """Every header we send is signed, so nothing on the way can change one unnoticed."""
    key = _one_secret(secret, access_key_secret)
    headers = {
        "accept": "application/json",
        "host": host,
        "x-acs-action": action,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-acs-date": _timestamp(now),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-version": version,
    }
    signed = sorted(headers)
    canonical = v3_canonical_request(method, path, query, headers, signed, headers["x-acs-content-sha256"])
    headers["authorization"] = v3_authorization(access_key_id, signed, v3_signature(canonical, key))
    return headers


# -- verification (simulators) ----------------------------------------------------------------------------
class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    """``code`` and ``message`` are what Alibaba would answer, so a simulator can pass them on."""

    ok: bool
    access_key_id: str | None = None
    code: str | None = None
    message: str | None = None


def _fail(code: str, message: str, access_key_id: str | None = None) -> VerifyResult:
    return VerifyResult(ok=False, access_key_id=access_key_id, code=code, message=message)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Callers pass a plain dict in any case as well as a case-insensitive multidict."""
    return {name.lower(): value for name, value in headers.items()}


def detect_signature_version(
    query: Mapping[str, str], headers: Mapping[str, str]
) -> Literal["v1", "v3"] | None:
    """An ACS3 Authorization header wins: the new SDK sends V3 unless told ``signature_algorithm='v2'``."""
    if _lowered(headers).get("authorization", "").lstrip().startswith("ACS3-"):
        return "v3"
    if "Signature" in query:
        return "v1"
    return None


def _stale(stamp: str, now: datetime | None, name: str, key_id: str) -> VerifyResult | None:
    """Replay protection rests on the timestamp window, so an unparsable one is refused too."""
    when = None
    for layout in (TIMESTAMP_FORMAT, "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            when = datetime.strptime(stamp, layout).replace(tzinfo=UTC)
            break
        except ValueError:
            continue
    if when is None:
        return _fail(
            "IllegalTimestamp", f"The input parameter {name} is not in the format {TIMESTAMP_FORMAT}.", key_id
        )
    if abs(_utc(now) - when) > MAX_SKEW:
        return _fail(
            "IllegalTimestamp",
            f"The input parameter {name} is more than {MAX_SKEW.seconds // 60} minutes from the server time.",
            key_id,
        )
    return None


def _missing(name: str) -> VerifyResult:
    return _fail(
        "MissingParameter",
        f"The input parameter {name} that is mandatory for processing this request is not supplied.",
    )


def _no_key() -> VerifyResult:
    return _fail("InvalidAccessKeyId.NotFound", "Specified access key is not found.")


def _mismatch(key_id: str, detail: str = "") -> VerifyResult:
    return _fail(
        "SignatureDoesNotMatch", f"Specified signature is not matched with our calculation.{detail}", key_id
    )


def verify_v1(
    query: Mapping[str, str], method: str, secret_for: SecretLookup, *, now: datetime | None = None
) -> VerifyResult:
    """``query`` must already hold any form-body parameters too: V1 signs both together."""
    for name in V1_REQUIRED:
        if not query.get(name):
            return _missing(name)
    key_id = query["AccessKeyId"]
    secret = secret_for(key_id)
    if secret is None:
        return _no_key()
    stale = _stale(query["Timestamp"], now, "Timestamp", key_id)
    if stale is not None:
        return stale
    unsigned = {k: v for k, v in query.items() if k != "Signature"}
    if not _same(v1_signature(unsigned, method, secret), query["Signature"]):
        return _mismatch(key_id)
    return VerifyResult(ok=True, access_key_id=key_id)


def _parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, content = part.strip().partition("=")
        fields[name] = content.strip()
    return algorithm, fields


def _v3_candidates(path: str) -> Iterator[tuple[str, bool, bool]]:
    """Every reading the spec leaves open: path raw/encoded, keys raw/encoded, empty values ``k=``/``k``."""
    paths = dict.fromkeys([path or "/", quote(path or "/", safe="/~"), unquote(path or "/")])
    for candidate in paths:
        for quote_keys in (False, True):
            for bare_empty in (False, True):
                yield candidate, quote_keys, bare_empty


def verify_v3(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    secret_for: SecretLookup,
    *,
    now: datetime | None = None,
) -> VerifyResult:
    """Signs over the client's own SignedHeaders list: the SDK signs every header it sends
    (user-agent and x-acs-credentials-provider too), so no fixed list would match it."""
    lowered = _lowered(headers)
    algorithm, auth = _parse_authorization(lowered.get("authorization", ""))
    if algorithm != V3_ALGORITHM:
        return _fail("IncompleteSignature", f"The Authorization header must use {V3_ALGORITHM}.")
    key_id, signed_list, signature = (auth.get(f, "") for f in ("Credential", "SignedHeaders", "Signature"))
    if not (key_id and signed_list and signature):
        return _fail("IncompleteSignature", "Authorization needs Credential, SignedHeaders and Signature.")
    for name in V3_REQUIRED_HEADERS:
        if not lowered.get(name):
            return _missing(name)
    secret = secret_for(key_id)
    if secret is None:
        return _no_key()
    stale = _stale(lowered["x-acs-date"], now, "x-acs-date", key_id)
    if stale is not None:
        return stale
    signed = [name.strip() for name in signed_list.split(";") if name.strip()]
    covered = {name.lower() for name in signed}
    unsigned = sorted(n for n in lowered if (n == "host" or n.startswith("x-acs-")) and n not in covered)
    if unsigned:
        return _fail("IncompleteSignature", f"The header {unsigned[0]} must be signed.", key_id)
    absent = sorted(covered - lowered.keys())
    if absent:
        return _fail("IncompleteSignature", f"The signed header {absent[0]} is not in the request.", key_id)
    claimed = lowered["x-acs-content-sha256"]
    if not _same(hashlib.sha256(body).hexdigest(), claimed.lower()):
        return _mismatch(key_id, " x-acs-content-sha256 does not match the request body.")
    tried: set[str] = set()
    for candidate, quote_keys, bare_empty in _v3_candidates(path):
        canonical = v3_canonical_request(
            method, candidate, query, headers, signed, claimed, quote_keys=quote_keys, bare_empty=bare_empty
        )
        if canonical in tried:
            continue
        tried.add(canonical)
        if _same(v3_signature(canonical, secret), signature):
            return VerifyResult(ok=True, access_key_id=key_id)
    return _mismatch(key_id)
