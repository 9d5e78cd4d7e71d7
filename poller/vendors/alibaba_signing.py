"""Alibaba Cloud request signatures: V1 (RPC, HMAC-SHA1) and V3 (ACS3-HMAC-SHA256).

Signers for the adapters and verifiers for the simulators. Where the SDK generations disagree
(V3 canonical query: keys quoted or not, an empty value as ``k=`` or ``k``), the verifier accepts
every reading, because a real client may send any of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

import msgspec

V3_ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
SecretLookup = Callable[[str], str | None]


def _pct(text: str) -> str:
    """RFC 3986: only A-Z a-z 0-9 - _ . ~ stay; space is %20, * is %2A, UTF-8 bytes are %XY."""
    return quote(text, safe="~")


def _timestamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- V1 --------------------------------------------------------------------------------------------
def v1_string_to_sign(params: Mapping[str, str | None], method: str) -> str:
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()) if v is not None)
    return f"{method.upper()}&%2F&{_pct(canonical)}"


def v1_signature(params: Mapping[str, str | None], method: str, secret: str) -> str:
    digest = hmac.new((secret + "&").encode(), v1_string_to_sign(params, method).encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def v1_sign_query(
    *,
    params: Mapping[str, str],
    action: str,
    version: str,
    access_key_id: str,
    access_key_secret: str,
    method: str = "POST",
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The complete query of a V1 request: API params, common params and ``Signature``."""
    query = {k: v for k, v in params.items() if k != "Signature"}
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
    query["Signature"] = v1_signature(query, method, access_key_secret)
    return query


# -- V3 --------------------------------------------------------------------------------------------
def v3_canonical_query(
    query: Mapping[str, str | None], *, quote_keys: bool = False, bare_empty: bool = False
) -> str:
    parts = []
    for key in sorted(k for k, v in query.items() if v is not None):
        value = query[key] or ""
        name = _pct(key) if quote_keys else key
        parts.append(name if (bare_empty and value == "") else f"{name}={_pct(value)}")
    return "&".join(parts)


def v3_canonical_request(
    method: str,
    path: str,
    canonical_query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def v3_signature(canonical_request: str, secret: str) -> str:
    to_sign = f"{V3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def v3_sign_headers(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    host: str,
    action: str,
    version: str,
    access_key_id: str,
    access_key_secret: str,
    body: bytes = b"",
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a V3 request, ``Authorization`` included, signing every header sent."""
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
    canonical = v3_canonical_request(
        method, path, v3_canonical_query(query), headers, signed, headers["x-acs-content-sha256"]
    )
    signature = v3_signature(canonical, access_key_secret)
    headers["authorization"] = (
        f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},Signature={signature}"
    )
    return headers


# -- verification (simulators) --------------------------------------------------------------------
class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    access_key_id: str | None = None
    code: str | None = None
    message: str | None = None


def _fail(code: str, message: str, access_key_id: str | None = None) -> VerifyResult:
    return VerifyResult(ok=False, access_key_id=access_key_id, code=code, message=message)


def detect_signature_version(
    query: Mapping[str, str], headers: Mapping[str, str]
) -> Literal["v1", "v3"] | None:
    auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
    if auth.startswith(V3_ALGORITHM):
        return "v3"
    if "Signature" in query:
        return "v1"
    return None


def _fresh(stamp: str | None, now: datetime | None) -> bool:
    if not stamp:
        return False
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs((now or datetime.now(UTC)) - when) <= MAX_SKEW


def verify_v1(
    query: Mapping[str, str], method: str, secret_for: SecretLookup, now: datetime | None = None
) -> VerifyResult:
    for required in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
        if not query.get(required):
            return _fail(
                "MissingParameter", f"The input parameter {required} that is mandatory is not supplied."
            )
    key_id = query["AccessKeyId"]
    secret = secret_for(key_id)
    if secret is None:
        return _fail("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if not _fresh(query.get("Timestamp"), now):
        return _fail("IllegalTimestamp", "The input parameter Timestamp is not in the valid range.", key_id)
    unsigned = {k: v for k, v in query.items() if k != "Signature"}
    if not hmac.compare_digest(v1_signature(unsigned, method, secret), query["Signature"]):
        return _fail(
            "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", key_id
        )
    return VerifyResult(ok=True, access_key_id=key_id)


def _parse_authorization(value: str) -> dict[str, str] | None:
    if not value.startswith(V3_ALGORITHM + " "):
        return None
    fields: dict[str, str] = {}
    for part in value[len(V3_ALGORITHM) + 1 :].split(","):
        name, sep, content = part.strip().partition("=")
        if not sep:
            return None
        fields[name] = content
    return fields if {"Credential", "SignedHeaders", "Signature"} <= fields.keys() else None


def verify_v3(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    secret_for: SecretLookup,
    now: datetime | None = None,
) -> VerifyResult:
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = _parse_authorization(lowered.get("authorization", ""))
    if auth is None:
        return _fail("IncompleteSignature", "The request signature does not conform to Aliyun standards.")
    key_id = auth["Credential"]
    secret = secret_for(key_id)
    if secret is None:
        return _fail("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if not _fresh(lowered.get("x-acs-date"), now):
        return _fail("IllegalTimestamp", "The input parameter x-acs-date is not in the valid range.", key_id)
    payload_hash = hashlib.sha256(body).hexdigest()
    if lowered.get("x-acs-content-sha256", payload_hash) != payload_hash:
        return _fail("SignatureDoesNotMatch", "The body does not match x-acs-content-sha256.", key_id)
    signed = [name for name in auth["SignedHeaders"].split(";") if name]
    if not {"host", "x-acs-date"} <= set(signed):
        return _fail("IncompleteSignature", "host and x-acs-date must be signed.", key_id)
    claimed = lowered.get("x-acs-content-sha256", payload_hash)
    for quote_keys in (False, True):
        for bare_empty in (False, True):
            canonical_query = v3_canonical_query(query, quote_keys=quote_keys, bare_empty=bare_empty)
            canonical = v3_canonical_request(method, path, canonical_query, lowered, signed, claimed)
            if hmac.compare_digest(v3_signature(canonical, secret), auth["Signature"]):
                return VerifyResult(ok=True, access_key_id=key_id)
    return _fail("SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", key_id)
