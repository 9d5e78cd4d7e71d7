"""Our Alibaba signers equal the official SDK's on random input, and our verifiers accept both what we
sign and what the official SDK really sends over a socket."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from alibabacloud_outboundbot20191226 import models as outboundbot_models  # type: ignore[import-untyped]
from alibabacloud_outboundbot20191226.client import Client as OutboundBotClient  # type: ignore[import-untyped]
from alibabacloud_tea_openapi import models as open_api_models  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils import Utils  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from poller.vendors.alibaba_signing import (
    V3_ALGORITHM,
    detect_signature_version,
    v1_sign_query,
    v1_signature,
    v3_authorization,
    v3_canonical_query,
    v3_canonical_request,
    v3_sign_headers,
    v3_signature,
    verify_v1,
    verify_v3,
)

# The SDK the generated clients call (tea-openapi 0.4.6 carries its own copy of the util code), and the
# standalone alibabacloud-openapi-util package that older clients use, where it is installed.
ORACLES: list[Any] = [pytest.param(Utils, id="tea-openapi")]
try:
    from alibabacloud_openapi_util.client import Client as OpenApiUtilClient  # type: ignore[import-untyped]
except ImportError:
    ORACLES.append(pytest.param(None, id="openapi-util", marks=pytest.mark.skip("not installed")))
else:
    ORACLES.append(pytest.param(OpenApiUtilClient, id="openapi-util"))

AK = "LTAI5tSigningTestKey"
SECRET = "signing-test-secret"
SECRETS = {AK: SECRET}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Chinese text, spaces, the characters that RFC 3986 / form encoding treat specially, and empty strings
tricky = st.text(
    alphabet=st.sampled_from(list("aZ09 -_.~*+/=&%?#中文任务张三")) | st.characters(codec="utf-8"),
    max_size=10,
)
keys = st.text(alphabet=st.sampled_from(list("AbPageNumber_.~ *+/=&中")), min_size=1, max_size=8)
params = st.dictionaries(keys, tricky | st.just(""), max_size=6)
#: None values are dropped by the SDK and by us
params_with_none = st.dictionaries(keys, tricky | st.just("") | st.none(), max_size=6)
methods = st.sampled_from(["GET", "POST", "PUT"])


# -- equal to the official SDK ----------------------------------------------------------------------------
@pytest.mark.parametrize("oracle", ORACLES)
@settings(max_examples=200, deadline=None)
@given(query=params_with_none, secret=tricky, method=methods)
def test_v1_signature_equals_the_sdk(
    oracle: Any, query: dict[str, str | None], secret: str, method: str
) -> None:
    assert v1_signature(query, method, secret) == oracle.get_rpcsignature(query, method, secret)


#: header names collide case-insensitively on purpose: the SDK joins such values with ","
header_names = st.text(alphabet=st.sampled_from(list("xXaA-")), min_size=1, max_size=4)
header_values = st.text(alphabet=st.sampled_from(list(" \taZ09;:,=中")), max_size=8)


@pytest.mark.parametrize("oracle", ORACLES)
@settings(max_examples=200, deadline=None)
@given(
    query=params_with_none,
    secret=tricky,
    method=methods,
    path=st.sampled_from(["/", "", "/a b/中文", "/x~y*z+w"]),
    body=st.binary(max_size=32),
    extra=st.dictionaries(header_names, header_values, max_size=4),
)
def test_v3_authorization_equals_the_sdk(
    oracle: Any,
    query: dict[str, str | None],
    secret: str,
    method: str,
    path: str,
    body: bytes,
    extra: dict[str, str],
) -> None:
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "host": "127.0.0.1:8080",
        "x-acs-action": "ListJobsByGroup",
        "x-acs-version": "2019-12-26",
        "x-acs-date": "2026-11-22T10:00:00Z",
        "x-acs-signature-nonce": "n",
        "x-acs-content-sha256": payload,
        "User-Agent": " AlibabaCloud (Linux) Python/3.11 ",
        "accept": "application/json",
        **extra,
    }
    request = SimpleNamespace(method=method, pathname=path, query=query, headers=headers)
    expected = oracle.get_authorization(request, V3_ALGORITHM, payload, AK, secret)
    signed = sorted({name.lower() for name in headers})
    canonical = v3_canonical_request(method, path, query, headers, signed, payload)
    assert v3_authorization(AK, signed, v3_signature(canonical, secret)) == expected


def test_v3_canonical_query_readings() -> None:
    query = {"b": "", "a b": "x y*~", "c": None}
    assert v3_canonical_query(query) == "a b=x%20y%2A~&b="
    assert v3_canonical_query(query, quote_keys=True, bare_empty=True) == "a%20b=x%20y%2A~&b"


# -- round trips ------------------------------------------------------------------------------------------
def _v1(query: dict[str, str], **overrides: Any) -> dict[str, str]:
    kwargs: dict[str, Any] = {
        "access_key_id": AK,
        "secret": SECRET,
        "action": "ListJobsByGroup",
        "version": "2019-12-26",
    }
    return v1_sign_query(query, **(kwargs | overrides))


def _v3(query: dict[str, str], body: bytes = b"", **overrides: Any) -> dict[str, str]:
    kwargs: dict[str, Any] = {
        "method": "POST",
        "path": "/",
        "query": query,
        "host": "127.0.0.1:8080",
        "action": "ListJobsByGroup",
        "version": "2019-12-26",
        "access_key_id": AK,
        "secret": SECRET,
        "body": body,
    }
    return v3_sign_headers(**(kwargs | overrides))


@settings(max_examples=100, deadline=None)
@given(query=params)
def test_v1_round_trip(query: dict[str, str]) -> None:
    signed = _v1(query)
    assert {"Action", "Format", "Version", "Timestamp", "SignatureNonce", "AccessKeyId"} <= signed.keys()
    assert (signed["SignatureMethod"], signed["SignatureVersion"]) == ("HMAC-SHA1", "1.0")
    assert detect_signature_version(signed, {}) == "v1"
    result = verify_v1(signed, "POST", SECRETS.get)
    assert (result.ok, result.access_key_id, result.code) == (True, AK, None)
    assert verify_v1(_v1(query, secret="wrong"), "POST", SECRETS.get).code == "SignatureDoesNotMatch"
    assert verify_v1(signed, "GET", SECRETS.get).code == "SignatureDoesNotMatch"
    assert verify_v1({**signed, "Injected": "1"}, "POST", SECRETS.get).code == "SignatureDoesNotMatch"


@settings(max_examples=100, deadline=None)
@given(query=params, body=st.binary(max_size=32))
def test_v3_round_trip(query: dict[str, str], body: bytes) -> None:
    headers = _v3(query, body)
    assert headers["accept"] == "application/json" and headers["x-acs-action"] == "ListJobsByGroup"
    assert detect_signature_version(query, headers) == "v3"
    result = verify_v3("POST", "/", query, headers, body, SECRETS.get)
    assert (result.ok, result.access_key_id, result.code) == (True, AK, None)
    # header names are matched case-insensitively, from a plain dict or a multidict
    shouting = {name.upper(): value for name, value in headers.items()}
    assert verify_v3("POST", "/", query, shouting, body, SECRETS.get).ok
    assert verify_v3("POST", "/", query, CIMultiDict(shouting), body, SECRETS.get).ok

    wrong = verify_v3("POST", "/", query, _v3(query, body, secret="wrong"), body, SECRETS.get)
    assert (wrong.ok, wrong.code, wrong.access_key_id) == (False, "SignatureDoesNotMatch", AK)
    tampered = verify_v3("POST", "/", query, headers, body + b"!", SECRETS.get)
    assert (tampered.ok, tampered.code) == (False, "SignatureDoesNotMatch")
    assert not verify_v3("POST", "/", {**query, "Injected": "1"}, headers, body, SECRETS.get).ok
    assert not verify_v3("GET", "/", query, headers, body, SECRETS.get).ok
    relabelled = {**headers, "x-acs-action": "DeleteJobGroup"}
    assert verify_v3("POST", "/", query, relabelled, body, SECRETS.get).code == "SignatureDoesNotMatch"


def test_unknown_key() -> None:
    v1 = _v1({}, access_key_id="LTAInobody")
    assert verify_v1(v1, "POST", SECRETS.get).code == "InvalidAccessKeyId.NotFound"
    v3 = _v3({}, access_key_id="LTAInobody")
    result = verify_v3("POST", "/", {}, v3, b"", SECRETS.get)
    assert (result.ok, result.code, result.access_key_id) == (False, "InvalidAccessKeyId.NotFound", None)


@pytest.mark.parametrize("offset", [timedelta(minutes=-16), timedelta(minutes=16), timedelta(days=-1)])
def test_stale_timestamp(offset: timedelta) -> None:
    when = datetime.now(UTC) + offset
    assert verify_v1(_v1({}, now=when), "POST", SECRETS.get).code == "IllegalTimestamp"
    assert verify_v3("POST", "/", {}, _v3({}, now=when), b"", SECRETS.get).code == "IllegalTimestamp"


def test_timestamp_window_is_fifteen_minutes() -> None:
    signed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    v1, v3 = _v1({}, now=signed_at), _v3({}, now=signed_at)
    assert v1["Timestamp"] == v3["x-acs-date"] == "2026-01-02T03:04:05Z"
    inside, outside = signed_at + timedelta(minutes=14), signed_at - timedelta(minutes=15, seconds=1)
    assert verify_v1(v1, "POST", SECRETS.get, now=inside).ok
    assert verify_v3("POST", "/", {}, v3, b"", SECRETS.get, now=inside).ok
    assert verify_v1(v1, "POST", SECRETS.get, now=outside).code == "IllegalTimestamp"
    assert verify_v3("POST", "/", {}, v3, b"", SECRETS.get, now=outside).code == "IllegalTimestamp"
    assert verify_v1({**v1, "Timestamp": "yesterday"}, "POST", SECRETS.get).code == "IllegalTimestamp"


def test_missing_and_incomplete() -> None:
    v1 = _v1({"PageNumber": "1"})
    for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
        partial = {k: v for k, v in v1.items() if k != name}
        assert verify_v1(partial, "POST", SECRETS.get).code == "MissingParameter", name
    assert detect_signature_version({"PageNumber": "1"}, {"Host": "h"}) is None

    v3 = _v3({})
    for broken in ("", "Bearer abc", "ACS3-HMAC-SHA256 Credential=x", "ACS3-HMAC-SM3 Credential=a,Sig=b"):
        assert verify_v3("POST", "/", {}, {**v3, "authorization": broken}, b"", SECRETS.get).code == (
            "IncompleteSignature"
        ), broken
    no_date = {k: v for k, v in v3.items() if k != "x-acs-date"}
    assert verify_v3("POST", "/", {}, no_date, b"", SECRETS.get).code == "MissingParameter"
    no_hash = {k: v for k, v in v3.items() if k != "x-acs-content-sha256"}
    assert verify_v3("POST", "/", {}, no_hash, b"", SECRETS.get).code == "MissingParameter"
    # an x-acs-* header that the signature does not cover could be changed on the way
    unsigned = {**v3, "x-acs-security-token": "t"}
    assert verify_v3("POST", "/", {}, unsigned, b"", SECRETS.get).code == "IncompleteSignature"


def test_garbage_signatures_fail_cleanly() -> None:
    """Non-ASCII signatures must give SignatureDoesNotMatch, not a TypeError from compare_digest."""
    v1 = {**_v1({}), "Signature": "签名"}
    assert verify_v1(v1, "POST", SECRETS.get).code == "SignatureDoesNotMatch"
    v3 = _v3({})
    forged = v3["authorization"].rsplit("Signature=", 1)[0] + "Signature=签名"
    assert verify_v3("POST", "/", {}, {**v3, "authorization": forged}, b"", SECRETS.get).code == (
        "SignatureDoesNotMatch"
    )


def _resign(headers: dict[str, str], query: dict[str, str], **reading: bool) -> dict[str, str]:
    """The same request signed by a client that reads the spec differently."""
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    canonical = v3_canonical_request("POST", "/", query, headers, signed, EMPTY_SHA256, **reading)
    return {**headers, "authorization": v3_authorization(AK, signed, v3_signature(canonical, SECRET))}


@pytest.mark.parametrize(
    "reading", [{}, {"bare_empty": True}, {"quote_keys": True}, {"bare_empty": True, "quote_keys": True}]
)
def test_v3_verifier_accepts_every_reading_of_the_query(reading: dict[str, bool]) -> None:
    """The SDK writes ``k=`` for an empty value and leaves keys raw; other clients may not."""
    query = {"JobStatus": "", "Page Number": "1", "组": "x"}
    headers = _resign(_v3(query), query, **reading)
    assert verify_v3("POST", "/", query, headers, b"", SECRETS.get).ok


def test_the_old_keyword_for_the_secret_still_works() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    old = v1_sign_query(
        {}, access_key_id=AK, access_key_secret=SECRET, action="A", version="1", now=when, nonce="n"
    )
    new = v1_sign_query({}, access_key_id=AK, secret=SECRET, action="A", version="1", now=when, nonce="n")
    assert old == new
    with pytest.raises(TypeError):
        v1_sign_query({}, access_key_id=AK, action="A", version="1")


# -- what the official SDK really sends -------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Captured:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes


ANSWER = {
    "RequestId": "r",
    "Code": "OK",
    "Success": True,
    "Jobs": {"PageNumber": 1, "PageSize": 10, "TotalCount": 0, "List": []},
}


@asynccontextmanager
async def recording_server() -> AsyncIterator[tuple[int, list[Captured]]]:
    captured: list[Captured] = []

    async def record(request: web.Request) -> web.Response:
        captured.append(
            Captured(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=await request.read(),
            )
        )
        return web.Response(body=json.dumps(ANSWER).encode(), headers={"Content-Type": "application/json"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], captured
    finally:
        await runner.cleanup()


async def sdk_request(algorithm: str | None) -> Captured:
    async with recording_server() as (port, captured):
        config = open_api_models.Config(
            access_key_id=AK,
            access_key_secret=SECRET,
            endpoint=f"127.0.0.1:{port}",
            protocol="http",
            region_id="cn-shanghai",
            read_timeout=5000,
            connect_timeout=5000,
        )
        if algorithm is not None:
            config.signature_algorithm = algorithm
        client = OutboundBotClient(config)
        request = outboundbot_models.ListJobsByGroupRequest(
            instance_id="inst 1*~",
            job_group_id="组/+=&?",
            job_status="",
            page_number=1,
            page_size=10,
        )
        response = await asyncio.to_thread(client.list_jobs_by_group, request)
        assert response.body.jobs.total_count == 0
    assert len(captured) == 1
    return captured[0]


def wrong_secret(key_id: str) -> str | None:
    return "not-the-secret" if key_id == AK else None


def nobody(key_id: str) -> str | None:
    return None


async def test_verifier_accepts_what_the_sdk_sends_by_default_v3() -> None:
    seen = await sdk_request(None)
    assert (seen.method, seen.path, seen.body) == ("POST", "/", b"")
    assert "Action" not in seen.query and seen.headers["x-acs-action"] == "ListJobsByGroup"
    assert seen.query["JobGroupId"] == "组/+=&?" and seen.query["JobStatus"] == ""
    assert detect_signature_version(seen.query, seen.headers) == "v3"
    # the SDK signs every header it sends, not only the ones we send
    signed = seen.headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"user-agent", "x-acs-credentials-provider", "accept", "host"} <= set(signed)

    result = verify_v3(seen.method, seen.path, seen.query, seen.headers, seen.body, SECRETS.get)
    assert (result.ok, result.access_key_id, result.code) == (True, AK, None)
    assert verify_v3(seen.method, seen.path, seen.query, seen.headers, seen.body, wrong_secret).code == (
        "SignatureDoesNotMatch"
    )
    assert not verify_v3(seen.method, seen.path, seen.query, seen.headers, b"x", SECRETS.get).ok
    plain = {name: value for name, value in seen.headers.items()}
    assert verify_v3(seen.method, seen.path, seen.query, plain, seen.body, SECRETS.get).ok


async def test_verifier_accepts_what_the_sdk_sends_with_v2_v1() -> None:
    seen = await sdk_request("v2")
    assert (seen.method, seen.path, seen.body) == ("POST", "/", b"")
    assert "authorization" not in seen.headers
    assert seen.query["Action"] == "ListJobsByGroup" and seen.query["SignatureMethod"] == "HMAC-SHA1"
    assert seen.query["Format"].lower() == "json"  # the SDK sends "json"; we send "JSON"
    assert detect_signature_version(seen.query, seen.headers) == "v1"

    result = verify_v1(seen.query, seen.method, SECRETS.get)
    assert (result.ok, result.access_key_id, result.code) == (True, AK, None)
    assert verify_v1(seen.query, seen.method, wrong_secret).code == "SignatureDoesNotMatch"
    assert verify_v1(seen.query, seen.method, nobody).code == "InvalidAccessKeyId.NotFound"
