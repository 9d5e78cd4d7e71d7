"""The push guards and the [push] config, on their own."""

from __future__ import annotations

import base64

import pytest

from poller.config import parse_config
from poller.errors import ConfigError
from poller.push.guard import ClientRate, RecentIds, basic_auth_matches

TENCENT = {
    "vendor": "tencent-ccc",
    "account": "tc",
    "secret_id": "AKID",
    "secret_key": "k",
    "sdk_app_ids": [1],
}


def _basic(text: bytes) -> str:
    return "Basic " + base64.b64encode(text).decode()


def test_basic_auth_takes_exactly_the_configured_pair() -> None:
    assert basic_auth_matches(_basic(b"u:p:with:colons"), "u", "p:with:colons")
    assert not basic_auth_matches(_basic(b"u:P"), "u", "p")
    assert not basic_auth_matches(_basic(b"up"), "u", "p")  # no separator
    assert not basic_auth_matches(_basic(b"\xff\xfe:p"), "u", "p")  # not UTF-8
    assert not basic_auth_matches("Basic !!!not-base64", "u", "p")
    assert not basic_auth_matches("Bearer token", "u", "p")
    assert not basic_auth_matches(None, "u", "p")


def test_client_rate_is_per_client_per_second_and_bounded_in_memory() -> None:
    rate = ClientRate(limit=3, clients=2)
    assert [rate.admit("a", now=10.0) for _ in range(4)] == [True, True, True, False]
    assert rate.admit("b", now=10.1)  # another client has its own budget
    assert rate.admit("a", now=11.0)  # a second later the window has moved
    rate.admit("c", now=11.0)
    assert len(rate._seen) == 2  # the least recently seen client was forgotten


def test_recent_ids_forget_the_oldest_beyond_capacity() -> None:
    recent = RecentIds(capacity=2)
    for push_id in ("a", "b", "c"):
        recent.add(push_id)
    assert "a" not in recent and "b" in recent and "c" in recent


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ({"vendor": "huawei-aicc", "account": "tc", "token": "t" * 16}, "no push receiver for 'huawei-aicc'"),
        ({"vendor": "tencent-ccc", "account": "other", "username": "u", "password": "p"}, "no source"),
        ({"vendor": "tencent-ccc", "account": "tc", "username": "u"}, "tencent-ccc needs password"),
        ({"vendor": "byrobot", "account": "tc", "token": "short"}, "at least 16 random characters"),
        ({"vendor": "byrobot", "account": "tc"}, "byrobot needs token"),
        (
            {"vendor": "tencent-ccc", "account": "tc", "oauth_client_id": "c"},
            "oauth_client_id and oauth_client_secret",
        ),
    ],
)
def test_push_receivers_must_name_a_supported_configured_source(
    receiver: dict[str, str], message: str
) -> None:
    data = {"push": {"receivers": [receiver]}, "sources": [TENCENT]}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_push_is_off_by_default() -> None:
    config = parse_config({"sources": [TENCENT]})
    assert not config.push.enabled and config.push.receivers == []


def test_oauth_tokens_expire_and_belong_to_one_receiver() -> None:
    from poller.push.oauth import TOKEN_SECONDS, ClientCredentials

    mine = ClientCredentials("tencent-ccc/a", "id", "secret")
    other = ClientCredentials("tencent-ccc/b", "id", "secret")
    token, _ = mine.issue(now=1_000_000)
    assert mine.bearer_valid(f"Bearer {token}", now=1_000_000 + TOKEN_SECONDS - 1)
    assert not mine.bearer_valid(f"Bearer {token}", now=1_000_000 + TOKEN_SECONDS + 1)
    assert not other.bearer_valid(f"Bearer {token}", now=1_000_000)
    assert not mine.bearer_valid("Bearer 12.34", now=0) and not mine.bearer_valid(None)
    assert mine.client_authenticated({}, b"grant_type=client_credentials&client_id=id&client_secret=secret")
    assert not mine.client_authenticated({}, b"grant_type=password&client_id=id&client_secret=secret")
    assert not mine.client_authenticated({}, b"\xff\xfe")
