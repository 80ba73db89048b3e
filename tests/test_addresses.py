"""The canonical address: one person, one string, whichever form they were written in."""

from __future__ import annotations

import pytest

from digest.core.addresses import AddressError, canonical_address, canonical_or_none, needs_smtputf8


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("Erin@Bücher.Example", "erin@xn--bcher-kva.example"),
        ("erin@XN--BCHER-KVA.example", "erin@xn--bcher-kva.example"),
        ("  Ann@Example.ORG ", "ann@example.org"),
        ("Jöe@Example.org", "jöe@example.org"),
    ],
)
def test_every_form_of_an_address_has_one_canonical_string(written: str, canonical: str) -> None:
    assert canonical_address(written) == canonical


@pytest.mark.parametrize(
    "text", ["", "no-at-sign", "a@b", "x@[127.0.0.1]", "a\r\nbcc@example.org", "a@" + "b" * 300]
)
def test_what_is_not_an_address_is_refused_in_words(text: str) -> None:
    with pytest.raises(AddressError) as refused:
        canonical_address(text)
    assert str(refused.value)
    assert canonical_or_none(text) is None


def test_only_a_non_ascii_local_part_needs_smtputf8() -> None:
    assert not needs_smtputf8(canonical_address("erin@bücher.example"))
    assert needs_smtputf8(canonical_address("jöe@example.org"))
    assert canonical_or_none(["not", "text"]) is None


def test_text_far_longer_than_any_address_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(AddressError, match="that is too long to be an email address"):
        canonical_address("a" * 2000 + "@example.com")
