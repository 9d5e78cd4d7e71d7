"""The one redaction step: properties over generated text, and the free-text fields of events."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime

import msgspec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from poller.pipeline.privacy import PersonalDataPolicy, Privacy
from poller.pipeline.redact import MASK, Redactor
from schemas import (
    CallDetail,
    CallFinished,
    CallOutcome,
    DegradeReason,
    EntityKind,
    SourceDegraded,
    Status,
    TaskAppeared,
    TaskState,
)

#: text around the sensitive part: words, punctuation and spaces, but no digits (which could join a number)
_FILLER = st.text(alphabet=st.sampled_from("abcdefghij XYZ,;:()[]{}'\"/-_=&.!?中文错误"), max_size=30)
_SECRET = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_.~!*"),
    min_size=8,
    max_size=40,
)
_MOBILE = st.builds(
    lambda second, rest: f"1{second}{rest}", st.sampled_from("3456789"), st.from_regex(r"\A\d{9}\Z")
)
_CREDENTIAL_KEY = st.sampled_from(
    [
        "client_secret",
        "appSecret",
        "access_token",
        "password",
        "passwd",
        "Signature",
        "access_key_secret",
        "AccessKeySecret",
        "authorization",
        "x-api-key",
        "refreshToken",
        "sign",
    ]
)


def _spelled(mobile: str, style: int) -> str:
    """A mobile number the ways vendors write it."""
    spaced = f"{mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    dashed = f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
    return [mobile, "+86" + mobile, "0086" + mobile, "86" + mobile, "+86 " + spaced, dashed, spaced][style]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


@settings(max_examples=300, deadline=None)
@given(before=_FILLER, after=_FILLER, secret=_SECRET, form=st.integers(0, 3))
def test_a_configured_secret_never_survives_in_any_spelling(
    before: str, after: str, secret: str, form: int
) -> None:
    spelled = [
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
    ]
    text = before + spelled[form] + after
    redactor = Redactor([secret])
    for out in (redactor(text), redactor.event_text(text), redactor.secrets(text)):
        assert secret not in out and spelled[form] not in out


@settings(max_examples=300, deadline=None)
@given(before=_FILLER, after=_FILLER, key=_CREDENTIAL_KEY, value=_SECRET, style=st.integers(0, 4))
def test_a_value_under_a_credential_key_is_masked_in_every_syntax(
    before: str, after: str, key: str, value: str, style: int
) -> None:
    pair = [
        f"{key}={value}",
        f'"{key}": "{value}"',
        f"{key}: {value}",
        f'\\"{key}\\":\\"{value}\\"',
        f"'{key}'='{value}'",
    ][style]
    # the property is about the value under the key: the same characters elsewhere are not a secret
    assume(value not in before and value not in after and value not in pair.replace(value, ""))
    out = Redactor()(before + " " + pair + " " + after)
    assert value not in out and MASK in out


@settings(max_examples=300, deadline=None)
@given(before=_FILLER, after=_FILLER, mobile=_MOBILE, style=st.integers(0, 6))
def test_a_mobile_number_never_survives_in_any_spelling(
    before: str, after: str, mobile: str, style: int
) -> None:
    text = before + " " + _spelled(mobile, style) + " " + after
    for policy in (PersonalDataPolicy.MASK, PersonalDataPolicy.HASH):
        redactor = Redactor(privacy=Privacy(policy, salt="s"))
        for out in (redactor(text), redactor.event_text(text)):
            assert mobile not in _digits(out), out
            assert mobile[3:7] not in out


def _grouped(digits: str, cuts: list[int], separators: list[str]) -> str:
    """``digits`` with a separator at each of ``cuts`` (places between two digits)."""
    out, last = [], 0
    for cut, separator in zip(sorted(set(cuts)), separators, strict=False):
        out += [digits[last:cut], separator]
        last = cut
    return "".join([*out, digits[last:]])


_SEPARATORS = st.lists(st.sampled_from(["-", " ", "."]), min_size=10, max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    before=_FILLER,
    after=_FILLER,
    mobile=_MOBILE,
    cuts=st.lists(st.integers(1, 10), max_size=10),
    separators=_SEPARATORS,
    prefix=st.sampled_from(["", "+86 ", "0086-", "86"]),
)
def test_a_mobile_number_never_survives_however_it_is_grouped(
    before: str, after: str, mobile: str, cuts: list[int], separators: list[str], prefix: str
) -> None:
    text = f"{before} {prefix}{_grouped(mobile, cuts, separators)} {after}"
    for policy in (PersonalDataPolicy.MASK, PersonalDataPolicy.HASH):
        redactor = Redactor(privacy=Privacy(policy, salt="s"))
        for out in (redactor(text), redactor.event_text(text), redactor.kept(text)):
            assert mobile[3:9] not in _digits(out), out


@settings(max_examples=300, deadline=None)
@given(
    before=_FILLER,
    after=_FILLER,
    area=st.from_regex(r"\A0[1-9]\d{1,2}\Z"),
    local=st.from_regex(r"\A[2-9]\d{6,7}\Z"),
    split=st.booleans(),
    separator=st.sampled_from(["-", " ", "."]),
    style=st.integers(0, 3),
)
def test_a_landline_never_survives_with_its_local_number_whole_or_split(
    before: str, after: str, area: str, local: str, split: bool, separator: str, style: int
) -> None:
    number = f"{local[:-4]}{separator}{local[-4:]}" if split else local
    spelled = [f"{area}-{number}", f"({area}) {number}", f"{area} {number}", f"+86 {area[1:]}-{number}"][
        style
    ]
    out = Redactor()(f"{before} {spelled} {after}")
    assert local[-6:] not in _digits(out), out


@settings(max_examples=200, deadline=None)
@given(before=_FILLER, after=_FILLER, digits=st.from_regex(r"\A\d{7,20}\Z"))
def test_any_long_digit_run_is_treated_as_a_number_someone_could_be_reached_at(
    before: str, after: str, digits: str
) -> None:
    out = Redactor()(f"{before} {digits} {after}")
    assert digits not in out


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), secret=_SECRET)
def test_redaction_is_stable_and_never_raises(text: str, secret: str) -> None:
    """Masked text masked again is unchanged, so a value passing two channels reads the same."""
    redactor = Redactor([secret])
    once = redactor(text)
    assert redactor(once) == once


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=12), max_size=12
    ),
    number=st.integers(0, 999999),
)
def test_ordinary_text_is_left_alone(words: list[str], number: int) -> None:
    """Words, short numbers, decimals and timestamps are not secrets nor phone numbers."""
    line = " ".join(words) + f" took {number} ms, 12.345678 s at 2026-12-01T20:58:27.123+00:00"
    if not any(w in ("bearer", "basic") for w in words):
        assert Redactor(["configured-secret"])(line) == line


def test_the_form_body_a_vendor_echoes_loses_its_secret_but_keeps_its_shape() -> None:
    body = "grant_type=client_credentials&client_id=app-1&client_secret=s3cr%2Bt%2Fx&scope=all"
    out = Redactor()(f"HTTP 401: invalid_client: {body}")
    assert out == (
        "HTTP 401: invalid_client: "
        "grant_type=client_credentials&client_id=app-1&client_secret=<redacted>&scope=all"
    )


def test_names_and_landlines_and_bearer_tokens() -> None:
    redactor = Redactor()
    out = redactor(
        '{"customerName": "王小明", "phone": "010-12345678"} 姓名：李四，Authorization: Bearer abc.def.ghi'
    )
    assert "王小明" not in out and "李四" not in out and "12345678" not in out and "abc.def.ghi" not in out
    assert '"customerName": "王**"' in out and "Bearer <redacted>" in out


def test_keep_policy_keeps_personal_data_in_events_only() -> None:
    redactor = Redactor(["topsecret"], Privacy(PersonalDataPolicy.KEEP))
    text = "callee 13812345678 rejected, token=topsecret"
    assert redactor.event_text(text) == "callee 13812345678 rejected, token=<redacted>"
    assert "13812345678" not in redactor(text)  # logs and the operator's views never carry it


def test_hash_policy_hashes_numbers_as_the_typed_fields_do() -> None:
    privacy = Privacy(PersonalDataPolicy.HASH, salt="pepper")
    out = Redactor(privacy=privacy).event_text("callee +86 138-1234-5678 busy")
    assert out == f"callee {privacy.phone('8613812345678')} busy"


def test_every_free_text_field_of_an_event_is_redacted_and_identities_are_not() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    redactor = Redactor(["vendor-secret"])
    degraded = SourceDegraded(
        event_id="e1",
        vendor="tencent-ccc",
        account="main",
        observed_at=now,
        api="DescribeAutoCalloutTasks",
        reason=DegradeReason.SERVER_ERROR,
        detail="signed with vendor-secret for 13812345678",
        episode=1,
    )
    assert redactor.event(degraded).detail == "signed with <redacted> for 138******78"
    call = CallFinished(
        event_id="e2",
        vendor="byrobot",
        account="main",
        observed_at=now,
        call_id="9876543210123",
        task_id="12345678",
        outcome=CallOutcome.REJECTED,
        raw_outcome="7",
        failure_reason="callee 13812345678 rejected",
        callee_number="138****5678",
        detail=CallDetail(hung_up_by="customerName=王小明", results={"意向": "回电 13912345678"}),
    )
    scrubbed = redactor.event(call)
    assert scrubbed.failure_reason == "callee 138******78 rejected"
    assert scrubbed.detail is not None and scrubbed.detail.results == {"意向": "回电 139******78"}
    assert scrubbed.detail.hung_up_by == "customerName=王**"
    # ids and the typed personal fields (already under the privacy policy) are not rewritten
    assert (scrubbed.call_id, scrubbed.task_id, scrubbed.callee_number) == (
        "9876543210123",
        "12345678",
        "138****5678",
    )
    appeared = TaskAppeared(
        event_id="e3",
        vendor="byrobot",
        account="main",
        observed_at=now,
        kind=EntityKind.TASK,
        entity_id="4000000001",
        name="回访 13812345678",
        seq=1,
        current=Status(state=TaskState.RUNNING, raw="1"),
    )
    out = redactor.event(appeared)
    assert (
        out.name == "回访 138******78"
        and out.entity_id == "4000000001"
        and out.current.state is TaskState.RUNNING
    )
    clean = redactor.event(msgspec.structs.replace(appeared, name="plain name"))
    assert clean is not None and clean.name == "plain name"


@settings(max_examples=200, deadline=None)
@given(before=_FILLER, after=_FILLER, secret=_SECRET, data=st.data())
def test_a_secret_cut_short_by_a_length_limit_is_masked_too(
    before: str, after: str, secret: str, data: st.DataObject
) -> None:
    """Vendors' messages are cut at a length limit before we see them: half a secret is still one."""
    cut = data.draw(st.integers(min_value=8, max_value=len(secret)))
    out = Redactor([secret])(before + secret[:cut] + after)
    assert secret[:cut] not in out


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80) | st.sampled_from(["name=张三 13812345678", "客户姓名：王小明 task-1"]))
def test_a_name_kept_in_state_and_published_again_reads_as_published_under_every_policy(text: str) -> None:
    """The vanish takes its name from state, where it is kept redacted; the publisher redacts it
    again. Under mask and hash that is what the appearance published (a hash is not hashed again);
    under keep the state still masks, and the publisher keeps that."""
    for policy in PersonalDataPolicy:
        redactor = Redactor(["configured-secret"], Privacy(policy, salt="pepper"))
        kept = redactor.kept(text)
        assert redactor.kept(kept) == kept
        if policy is PersonalDataPolicy.KEEP:
            assert redactor.event_text(kept) == kept == redactor(text)
        else:
            assert redactor.event_text(kept) == redactor.event_text(text) == kept


def test_the_state_masks_personal_data_even_where_events_keep_it() -> None:
    redactor = Redactor(privacy=Privacy(PersonalDataPolicy.KEEP))
    assert redactor.event_text("客户姓名：王小明 13812345678") == "客户姓名：王小明 13812345678"
    assert redactor.kept("客户姓名：王小明 13812345678") == "客户姓名：王** 138******78"


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("0123456789+-. ()86abc王"), max_size=40)
    | st.from_regex(
        r"(\+86|0086)?[ -]?1[3-9]\d[ .-]?\d{4}[ .-]?\d{4}|\(?0\d{2,3}\)?[ -]?\d{7,8}", fullmatch=True
    )
)
def test_text_that_the_first_check_lets_through_has_nothing_to_mask(text: str) -> None:
    """The cheap check that spares most text every pass lets through only what they would not change."""
    redactor = Redactor()
    if not redactor._suspect(text):
        assert redactor._personal(redactor._credentials(text), Privacy(PersonalDataPolicy.MASK)) == text
