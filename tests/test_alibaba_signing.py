"""Our Alibaba signers equal the official SDK's on random inputs; our verifiers accept what we sign."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from alibabacloud_tea_openapi.utils import Utils
from hypothesis import given, settings
from hypothesis import strategies as st

from poller.vendors.alibaba_signing import (
    detect_signature_version,
    v1_sign_query,
    v1_signature,
    v3_canonical_query,
    v3_canonical_request,
    v3_sign_headers,
    v3_signature,
    verify_v1,
    verify_v3,
)

#: Chinese text, spaces, the characters quoting treats specially, and empty values
tricky = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 -_.~*+/=&%?中文任务张三"))
    | st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=12,
)
params = st.dictionaries(
    st.text(alphabet=st.sampled_from(list("AbcPageNumber_Id.")), min_size=1, max_size=8), tricky, max_size=6
)


@settings(max_examples=200, deadline=None)
@given(params=params, secret=tricky, method=st.sampled_from(["GET", "POST"]))
def test_v1_signature_equals_the_sdk(params: dict[str, str], secret: str, method: str) -> None:
    assert v1_signature(params, method, secret) == Utils.get_rpcsignature(params, method, secret)


@settings(max_examples=200, deadline=None)
@given(query=params, secret=tricky, body=st.binary(max_size=64), extra=tricky)
def test_v3_authorization_equals_the_sdk(query: dict[str, str], secret: str, body: bytes, extra: str) -> None:
    headers = {
        "host": "127.0.0.1:8080",
        "x-acs-action": "ListTask",
        "x-acs-version": "2019-10-15",
        "x-acs-date": "2026-11-22T10:00:00Z",
        "x-acs-signature-nonce": "n",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "user-agent": " agent " + extra.replace("\n", " ") + " ",
        "accept": "application/json",
    }
    request = SimpleNamespace(method="POST", pathname="/", query=query, headers=headers)
    payload = headers["x-acs-content-sha256"]
    expected = Utils.get_authorization(request, "ACS3-HMAC-SHA256", payload, "AKID", secret)
    signed = sorted(headers)
    canonical = v3_canonical_request("POST", "/", v3_canonical_query(query), headers, signed, payload)
    signature = v3_signature(canonical, secret)
    ours = f"ACS3-HMAC-SHA256 Credential=AKID,SignedHeaders={';'.join(signed)},Signature={signature}"
    assert ours == expected


SECRETS = {"AKIDgood": "good-secret"}


@settings(max_examples=100, deadline=None)
@given(query=params)
def test_what_we_sign_verifies_and_tampering_does_not(query: dict[str, str]) -> None:
    v1 = v1_sign_query(
        params=query,
        action="ListTask",
        version="2019-10-15",
        access_key_id="AKIDgood",
        access_key_secret="good-secret",
    )
    assert detect_signature_version(v1, {}) == "v1"
    assert verify_v1(v1, "POST", SECRETS.get).ok
    wrong = v1_sign_query(
        params=query,
        action="ListTask",
        version="2019-10-15",
        access_key_id="AKIDgood",
        access_key_secret="bad",
    )
    assert verify_v1(wrong, "POST", SECRETS.get).code == "SignatureDoesNotMatch"

    body = b"x=1"
    headers = v3_sign_headers(
        method="POST",
        path="/",
        query=query,
        host="h:1",
        action="ListTask",
        version="2019-10-15",
        access_key_id="AKIDgood",
        access_key_secret="good-secret",
        body=body,
    )
    assert detect_signature_version(query, headers) == "v3"
    result = verify_v3("POST", "/", query, headers, body, SECRETS.get)
    assert result.ok and result.access_key_id == "AKIDgood"
    assert verify_v3("POST", "/", query, headers, b"x=2", SECRETS.get).code == "SignatureDoesNotMatch"
    assert not verify_v3("POST", "/", {**query, "Injected": "1"}, headers, body, SECRETS.get).ok


def test_unknown_key_and_stale_timestamp() -> None:
    v1 = v1_sign_query(params={}, action="A", version="1", access_key_id="AKIDnobody", access_key_secret="s")
    assert verify_v1(v1, "POST", SECRETS.get).code == "InvalidAccessKeyId.NotFound"
    old = datetime.now(UTC) - timedelta(hours=1)
    stale = v1_sign_query(
        params={}, action="A", version="1", access_key_id="AKIDgood", access_key_secret="good-secret", now=old
    )
    assert verify_v1(stale, "POST", SECRETS.get).code == "IllegalTimestamp"
    headers = v3_sign_headers(
        method="POST",
        path="/",
        query={},
        host="h",
        action="A",
        version="1",
        access_key_id="AKIDgood",
        access_key_secret="good-secret",
        now=old,
    )
    assert verify_v3("POST", "/", {}, headers, b"", SECRETS.get).code == "IllegalTimestamp"


def test_empty_value_quirk_both_readings_accepted() -> None:
    """Some SDK generations canonicalize an empty value as ``k`` instead of ``k=``."""
    query = {"JobStatus": "", "PageNumber": "1"}
    headers = v3_sign_headers(
        method="POST",
        path="/",
        query=query,
        host="h",
        action="A",
        version="1",
        access_key_id="AKIDgood",
        access_key_secret="good-secret",
    )
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    bare = v3_canonical_query(query, bare_empty=True)
    assert bare == "JobStatus&PageNumber=1"
    canonical = v3_canonical_request("POST", "/", bare, headers, signed, headers["x-acs-content-sha256"])
    quirky = {
        **headers,
        "authorization": headers["authorization"].rsplit("Signature=", 1)[0]
        + "Signature="
        + v3_signature(canonical, "good-secret"),
    }
    assert verify_v3("POST", "/", query, quirky, b"", SECRETS.get).ok
