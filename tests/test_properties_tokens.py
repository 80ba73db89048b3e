"""Properties of the link tokens made today (`u2.`, `p2.`): whatever the address, a token reads
back as it, and any change of any one character of it is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from digest.core.tokens import (
    APPROVAL_PURPOSE,
    check_purpose_token,
    make_purpose_token,
    make_token,
    verify_token,
)
from tests.support.properties import examples

SECRET = "a-secret-of-thirty-two-bytes-or-more-0123"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

# Any text that can be encoded (no lone surrogates): tokens carry canonical addresses, but the
# format itself must not depend on that.
addresses = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=80)
purposes = st.sampled_from(["confirm", "preferences", APPROVAL_PURPOSE])
lifetimes = st.integers(min_value=1, max_value=10 * 365 * 24 * 3600).map(
    lambda seconds: timedelta(seconds=seconds)
)
# Any character a link, a mail client or a person could put in its place.
replacements = st.characters(exclude_categories=("Cs",))


@examples(300)
@given(addresses)
def test_an_unsubscribe_token_reads_back_as_its_address(address: str) -> None:
    token = make_token(SECRET, address)
    assert verify_token(SECRET, token) == address.lower()
    assert verify_token("another secret", token) is None
    assert check_purpose_token(SECRET, "confirm", token, NOW).problem == "invalid"


@examples(300)
@given(addresses, purposes, lifetimes)
def test_a_purpose_token_reads_back_until_it_expires(
    address: str, purpose: str, lifetime: timedelta
) -> None:
    expires = (NOW + lifetime).replace(microsecond=0)
    token = make_purpose_token(SECRET, purpose, address, expires)
    assert check_purpose_token(SECRET, purpose, token, NOW).address == address.lower()
    just_before = expires - timedelta(seconds=1)
    assert check_purpose_token(SECRET, purpose, token, just_before).address == address.lower()
    assert check_purpose_token(SECRET, purpose, token, expires).problem == "expired"
    for other in {"confirm", "preferences", APPROVAL_PURPOSE} - {purpose}:
        assert check_purpose_token(SECRET, other, token, NOW).problem == "invalid"
    assert verify_token(SECRET, token) is None


@examples(400)
@given(addresses, st.data())
def test_any_change_of_any_character_of_an_unsubscribe_token_is_refused(
    address: str, data: st.DataObject
) -> None:
    token = make_token(SECRET, address)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    character = data.draw(replacements.filter(lambda c: c != token[position]))
    changed = token[:position] + character + token[position + 1 :]
    assert verify_token(SECRET, changed) is None


@examples(400)
@given(addresses, purposes, st.data())
def test_any_change_of_any_character_of_a_purpose_token_is_refused(
    address: str, purpose: str, data: st.DataObject
) -> None:
    token = make_purpose_token(SECRET, purpose, address, NOW + timedelta(days=7))
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    character = data.draw(replacements.filter(lambda c: c != token[position]))
    changed = token[:position] + character + token[position + 1 :]
    assert check_purpose_token(SECRET, purpose, changed, NOW) == (
        check_purpose_token(SECRET, purpose, "", NOW)
    )
    assert check_purpose_token(SECRET, purpose, changed, NOW).problem == "invalid"


@examples(200)
@given(addresses, st.text(max_size=3).filter(bool), st.booleans())
def test_a_token_with_anything_added_or_cut_is_refused(
    address: str, extra: str, at_the_end: bool
) -> None:
    token = make_token(SECRET, address)
    longer = token + extra if at_the_end else extra + token
    assert verify_token(SECRET, longer) is None
    assert verify_token(SECRET, token[: -len(extra)]) is None
