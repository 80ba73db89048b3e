"""Known answers for every format digest keeps or sends: a fixed secret and inputs in, the exact
string out.

Each value here was written once, from the code as it was when the test was added, and is never
regenerated. A link in an inbox, a hash in the state, a Message-ID quoted in a bounce and an
archive URL in a search engine all outlive the release that made them: if one of these tests
fails, the change breaks what is already out there. Do not update the expected value; keep the
old form readable (as digest.core.tokens still reads 0.1.0's tokens) or write a migration, and add
the new form here beside the old one.

The unsubscribe and purpose tokens of both forms (readable, sealed) are pinned in
tests/test_tokens.py; this file adds the purposes and inputs it does not cover.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.archive.pages import issue_slug, issue_url, site_for
from digest.bounces.report import MESSAGE_ID_PATTERN, VERP_PATTERN
from digest.config.schema import Config, load_config
from digest.core.clicks import read_redirect_path, redirect_path
from digest.core.models import RenderedIssue, Subscriber
from digest.core.tokens import (
    APPROVAL_PURPOSE,
    TRANSACTIONAL_REFERENCE,
    UnsubscribeLink,
    address_hash,
    check_purpose_token,
    delivery_tag,
    make_purpose_token,
    make_token,
    read_token,
    tag_matches,
    verify_token,
)
from digest.mail.message import (
    bounce_sender,
    build_message,
    envelope_for,
    list_id,
    transactional_message,
)
from digest.readers.audience import forgotten_hashes, is_forgotten
from digest.store.archive import ArchivedIssue
from digest.store.ledger import StoredIssue

SECRET = "a-secret-of-thirty-two-bytes-or-more-0123"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)  # 1893456000

# ---------------------------------------------------------------- link tokens

# Sealed purpose tokens for the purposes and inputs tests/test_tokens.py does not pin: an
# approver's link (its "address" is the slot it approves), a Unicode local part, another expiry.
SEALED_PURPOSE = [
    (
        APPROVAL_PURPOSE,
        "2026-12-01t08:00",
        EXPIRY,
        "p2.zXoxQRFsiuHm9yQ4e6sfqmOxermojB7HGeF07Uz1LetXVxxOev9xFw",
    ),
    (
        "confirm",
        "zo\u00eb@xn--bcher-kva.example",
        EXPIRY,
        "p2.bjrG0d8BXb9rRXlJyWylMNiTAXb8R1kNnE_84E0lbzKkO1KpLFdEgsl4fcKJWMDSx_4",
    ),
    (
        "preferences",
        "ann@example.com",
        datetime(2027, 6, 1, 12, 30, tzinfo=UTC),
        "p2.XlNVBG3lUlaLWvF3Ad-LtF4-DoTsRu8lIYAy6c-8BnJ4niWy-3Bt",
    ),
]


@pytest.mark.parametrize(("purpose", "address", "expires", "token"), SEALED_PURPOSE)
def test_sealed_purpose_tokens_keep_their_form(
    purpose: str, address: str, expires: datetime, token: str
) -> None:
    assert make_purpose_token(SECRET, purpose, address, expires) == token
    assert check_purpose_token(SECRET, purpose, token, NOW).address == address
    assert check_purpose_token(SECRET, purpose, token, expires).problem == "expired"


def test_a_sealed_unsubscribe_token_with_a_plus_keeps_its_form() -> None:
    token = "u2.WCV5ruJtBuMCsTYZZ2H1zdP6Sm_dzbMlMQHs0tN4zQCp0Rhk"
    assert make_token(SECRET, "ann+news@example.org") == token
    assert verify_token(SECRET, token) == "ann+news@example.org"


def test_an_unsubscribe_token_naming_its_issue_keeps_its_form() -> None:
    token = "u3.yazuyrZ-BsXKxzXgtirV1sBLZQmSb1Ixa3qnfFD51ueFDhZPxdZd3w"
    assert make_token(SECRET, "ann+news@example.org", 12) == token
    assert read_token(SECRET, token) == UnsubscribeLink("ann+news@example.org", 12)
    assert verify_token(SECRET, token) == "ann+news@example.org"


def test_a_preferences_token_naming_its_issue_keeps_its_form() -> None:
    expires = datetime(2027, 6, 1, 12, 30, tzinfo=UTC)
    token = "p3.OMMQtoxIJIWdGo3e4oGW67BBr9XQ29LvjsNVDZhlkuQXG-E_AjXVIgJ2Iw"
    assert make_purpose_token(SECRET, "preferences", "ann@example.com", expires, 12) == token
    checked = check_purpose_token(SECRET, "preferences", token, NOW)
    assert (checked.address, checked.issue) == ("ann@example.com", 12)
    assert check_purpose_token(SECRET, "preferences", token, expires).problem == "expired"
    assert check_purpose_token(SECRET, "confirm", token, NOW).problem == "invalid"


# ---------------------------------------------------------------- forgotten addresses

# The keyed hash kept for each address whose owner asked to be forgotten. Each one in a state
# keeps that person off the list for good: a change of form lets them back in after an upgrade.
FORGOTTEN = {
    "ann@example.com": "85a0edc8e373ff2a94e2728fc9320faff097f5986ff79f413e2c8a382f2e2c49",
    "zo\u00eb@xn--bcher-kva.example": (
        "96365ea652c59bd16691589644c7bd5e0b8611aa3e927a7d653b6b3cece98ec2"
    ),
    # Sign-up rate limits key an IP address the same way.
    "203.0.113.7": "7ae6ad14c8275f986d4c24d9c9263d57dd04b51ea31f4b448a77c8b09af80748",
}


@pytest.mark.parametrize(("address", "hashed"), FORGOTTEN.items())
def test_the_forgotten_address_hash_keeps_its_form(address: str, hashed: str) -> None:
    assert address_hash(SECRET, address) == hashed
    assert address_hash(SECRET, address.upper()) == hashed
    assert address_hash("another secret", address) != hashed


def test_a_forgotten_international_address_is_known_by_both_of_its_forms() -> None:
    # The canonical (A-label) form, and the Unicode form earlier releases kept and hashed.
    hashes = forgotten_hashes(SECRET, "erin@xn--bcher-kva.example")
    assert hashes == (
        "d05015a62b8bf03e38b829de9412b34a05b40ffc0364b7031cbd60da2a758fed",
        "a12cbcac33e4f979a924a57a9e5c3570bdc62f415f6b2de657a548db455541bf",
    )
    assert hashes[1] == address_hash(SECRET, "erin@b\u00fccher.example")
    kept_by_0_1_0 = {hashes[1]}
    assert is_forgotten("erin@xn--bcher-kva.example", kept_by_0_1_0, SECRET)
    assert not is_forgotten("ann@example.com", kept_by_0_1_0, SECRET)


# ---------------------------------------------------------------- click redirects

# The redirect a tracked post link goes through (tracking.clicks: aggregate): issue and link in,
# the exact path out. Every copy of a sent issue carries these; a change of form breaks the
# links in every inbox.
CLICK_REDIRECTS = [
    (1, 1, "/r/1/1/xxjS3huonRTIiJNp"),
    (12, 3, "/r/12/3/CiAtBxBh92AwJCUA"),
    (2026, 40, "/r/2026/40/N66488FSQIhIoe6A"),
    (999999999999999, 999999, "/r/999999999999999/999999/rIp6wkz8HzbgGOlG"),
]


@pytest.mark.parametrize(("issue", "link", "path"), CLICK_REDIRECTS)
def test_click_redirects_keep_their_form(issue: int, link: int, path: str) -> None:
    assert redirect_path(SECRET, issue, link) == path
    assert read_redirect_path(SECRET, path) == (issue, link)
    assert read_redirect_path("another secret", path) is None


# ---------------------------------------------------------------- bounce identifiers

# A delivery's tag, in every envelope sender and Message-ID: a bounce that comes back after an
# upgrade must still name the delivery it reports.
DELIVERY_TAGS = [
    ("12", "ann@example.com", "jsekgctxkqxfvvfe"),
    (TRANSACTIONAL_REFERENCE, "ann@example.com", "fxg5cgvholwq2yze"),
    ("1", "zo\u00eb@xn--bcher-kva.example", "ioh7i3msm74vh4uq"),
]


@pytest.mark.parametrize(("reference", "address", "tag"), DELIVERY_TAGS)
def test_delivery_tags_keep_their_form(reference: str, address: str, tag: str) -> None:
    assert delivery_tag(SECRET, reference, address) == tag
    assert delivery_tag(SECRET, reference, address.upper()) == tag
    assert tag_matches(SECRET, reference, address, tag.upper())
    assert not tag_matches(SECRET, reference, address, tag[:-1] + ("a" if tag[-1] != "a" else "b"))
    assert not tag_matches(SECRET, "13", address, tag)


def test_a_return_path_names_the_delivery_in_its_verp_token() -> None:
    path = "bounces+{token}@example.org"
    assert bounce_sender(path, "digest@example.org", "12-jsekgctxkqxfvvfe") == (
        "bounces+12-jsekgctxkqxfvvfe@example.org"
    )
    assert bounce_sender(path, "digest@example.org", "") == "bounces@example.org"
    assert bounce_sender("bounces-{token}@example.org", "d@example.org", "") == (
        "bounces@example.org"
    )
    assert bounce_sender(None, "digest@example.org", "12-x") == "digest@example.org"


def make_config(tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(
        "newsletter:\n"
        "  title: Collaborate Weekly\n"
        '  from: "Collaborate CIC <digest@example.org>"\n'
        '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n'
        "  archive_url: https://news.example.org/archive/\n"
        "feeds:\n  - name: Blog\n    url: https://example.org/feed\n"
        "smtp:\n  host: 127.0.0.1\n  return_path: bounces+{token}@example.org\n",
        encoding="utf-8",
    )
    return load_config(path, {})


def test_an_issue_message_names_its_delivery_where_a_bounce_will_quote_it(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    rendered = RenderedIssue("News", "<p>Hello</p>", "Hello\n")
    envelope = envelope_for(config, rendered, NOW, reference="12")
    ann = "ann@example.com"
    message = build_message(
        envelope, Subscriber(ann, "Ann"), make_token(SECRET, ann), "", "jsekgctxkqxfvvfe"
    )
    assert message.sender == "bounces+12-jsekgctxkqxfvvfe@example.org"
    verp = VERP_PATTERN.search(message.sender)
    assert verp is not None and verp.groups() == ("12", "jsekgctxkqxfvvfe")
    head = message.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    found = MESSAGE_ID_PATTERN.search(head)
    assert found is not None and found.groups() == ("12", "jsekgctxkqxfvvfe")
    assert "\r\nMessage-ID: <d12.jsekgctxkqxfvvfe." in head
    assert "@example.org>\r\n" in head
    assert (
        "\r\nList-Unsubscribe: <https://example.org/unsubscribe?token="
        "u2.XbFznz3lh8OMphy1X0NoCtWgW3DUrHUl_HuZBnwvuQ>,\r\n"
        " <mailto:digest@example.org?subject=unsubscribe%20"
        "u2.XbFznz3lh8OMphy1X0NoCtWgW3DUrHUl_HuZBnwvuQ>\r\n"
    ) in head
    assert '\r\nList-Id: "Collaborate Weekly" <collaborate-weekly.example.org>\r\n' in head


def test_a_sign_up_message_names_its_delivery_with_the_transactional_reference(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path)
    message = transactional_message(
        config,
        Subscriber("ann@example.com", ""),
        "Confirm",
        "text",
        "<p>html</p>",
        NOW,
        None,
        "fxg5cgvholwq2yze",
    )
    assert message.sender == "bounces+s-fxg5cgvholwq2yze@example.org"
    found = MESSAGE_ID_PATTERN.search(message.data.decode("ascii"))
    assert found is not None and found.groups() == ("s", "fxg5cgvholwq2yze")


def test_a_list_id_keeps_its_form() -> None:
    # Readers filter on it: a changed List-Id sends the next issue past their filters.
    assert list_id("Example News \u2014 Weekly", "example.org") == (
        '"Example News \u2014 Weekly" <example-news-weekly.example.org>'
    )
    assert list_id("\u00a1\u00bf", "example.org") == '"\u00a1\u00bf" <digest.example.org>'


# ---------------------------------------------------------------- archive slugs and URLs

# An issue's slug is fixed when it is frozen and its URL is published, linked and indexed.
SLUGS = {
    "Weekly digest: 1 December 2026": "weekly-digest-1-december-2026",
    "Zo\u00eb\u2019s caf\u00e9 \u2014 na\u00efve r\u00e9sum\u00e9!": "zoes-cafe-naive-resume",
    "   ": "issue",
    "\u65e5\u672c\u8a9e": "issue",
    "A" * 70: "a" * 60,
    "The quick brown fox jumps over the lazy dog and keeps running far away": (
        "the-quick-brown-fox-jumps-over-the-lazy-dog-and-keeps"
    ),
}


@pytest.mark.parametrize(("subject", "slug"), SLUGS.items())
def test_archive_slugs_keep_their_form(subject: str, slug: str) -> None:
    assert issue_slug(subject) == slug


def test_issue_urls_keep_their_form(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    url = "https://news.example.org/archive/issues/7-weekly-digest-1-december-2026/"
    assert issue_url(config, 7, "weekly-digest-1-december-2026") == url
    stored = StoredIssue(1, NOW, NOW, None, "Weekly digest: 1 December 2026", "", "", 3)
    entry = ArchivedIssue(7, "weekly-digest-1-december-2026", "", stored)
    assert entry.key == "7-weekly-digest-1-december-2026"
    assert site_for(config).issue_url(entry) == url
