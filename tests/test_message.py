"""Building each subscriber's message from the once-rendered issue."""

from __future__ import annotations

import email
import email.header
import email.policy
import quopri
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from digest.config.schema import Config, load_config
from digest.core.errors import ConfigError
from digest.core.models import RenderedIssue, Subscriber
from digest.mail.message import (
    EncodedBody,
    IssueEnvelope,
    _crlf,
    _template,
    bounce_message_id,
    bounce_sender,
    build_message,
    envelope_for,
    list_id,
    load_dkim,
    sender_address,
    to_header,
    transactional_message,
    unsubscribe_links,
)
from digest.mail.smtp import wire_format
from digest.render.personalise import (
    EMAIL_PLACEHOLDER,
    NAME_PLACEHOLDER,
    RECIPIENT_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    display_name,
    personalise,
    placeholder,
)
from tests.support.dkimkey import make_dkim_key

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
LONG = "word " * 60
HTML = (
    "<html><body>\n"
    f'<p style="color:#333">Hello {NAME_PLACEHOLDER}, “welcome” — café</p>\n'
    f"<p>{LONG}</p>\n"
    ".a line that starts with a dot\n"
    "From the start of a line\n"
    "trailing spaces   \n"
    f'<a href="{UNSUBSCRIBE_PLACEHOLDER}">Unsubscribe {EMAIL_PLACEHOLDER}</a>\n'
    "</body></html>\n"
)
TEXT = (
    f"Hello {NAME_PLACEHOLDER},\n\n{LONG}\n\nSent to {RECIPIENT_PLACEHOLDER}.\n"
    f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}\n"
)
RENDERED = RenderedIssue("Collaborate Weekly: 3 new posts, 30 November 2026", HTML, TEXT)


def make_config(tmp_path: Path, extra: str = "") -> Config:
    path = tmp_path / "config.yaml"
    text = (
        "newsletter:\n"
        "  title: Collaborate Weekly\n"
        '  from: "Collaborate CIC <digest@example.org>"\n'
        '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n'
        "feeds:\n  - name: Blog\n    url: https://example.org/feed\n"
        "smtp:\n  host: 127.0.0.1\n" + extra
    )
    path.write_text(text, encoding="utf-8")
    return load_config(path, {})


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


@pytest.fixture(autouse=True)
def fresh_issue_templates() -> None:
    """Each test works its issue's headers and bodies out afresh, not from an earlier test."""
    _template.cache_clear()


@pytest.fixture
def envelope(tmp_path: Path) -> IssueEnvelope:
    return envelope_for(make_config(tmp_path), RENDERED, NOW)


SUBSCRIBERS = [
    Subscriber("ann@example.com", "Ann"),
    Subscriber("bob@example.com", ""),
    Subscriber("zoe@example.com", 'Zoë O\'Brien, PhD <"x">'),
    Subscriber("long@example.com", "A " * 80),
    Subscriber("tag+news@example.com", "Tom & Jerry"),
]


@pytest.mark.parametrize("subscriber", SUBSCRIBERS, ids=lambda s: s.email)
def test_bodies_decode_to_exactly_the_personalised_issue(
    envelope: IssueEnvelope, subscriber: Subscriber
) -> None:
    built = build_message(envelope, subscriber, "tok-en")
    url = "https://example.org/unsubscribe?token=tok-en"
    html, text = personalise(RENDERED, subscriber, url)
    message = parse(built.data)
    assert body(message, "html") == html
    assert body(message, "plain") == text
    assert message.get_content_type() == "multipart/alternative"
    assert not message.defects
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert not part.defects


def test_wire_format_is_crlf_with_short_lines(envelope: IssueEnvelope) -> None:
    data = build_message(envelope, SUBSCRIBERS[3], "t").data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76


def test_headers(envelope: IssueEnvelope) -> None:
    message = parse(build_message(envelope, SUBSCRIBERS[0], "abc").data)
    assert message["From"] == "Collaborate CIC <digest@example.org>"
    assert message["To"] == "Ann <ann@example.com>"
    assert message["Subject"] == RENDERED.subject
    assert message["Date"] == "Mon, 30 Nov 2026 08:00:00 +0000"
    assert message["Message-ID"].endswith("@example.org>")
    assert message["List-Id"] == '"Collaborate Weekly" <collaborate-weekly.example.org>'
    assert message["List-Unsubscribe"] == (
        "<https://example.org/unsubscribe?token=abc>, "
        "<mailto:digest@example.org?subject=unsubscribe%20abc>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Precedence"] == "bulk"
    assert message["Auto-Submitted"] is None
    assert message["MIME-Version"] == "1.0"


def test_each_message_has_its_own_message_id(envelope: IssueEnvelope) -> None:
    ids = {parse(build_message(envelope, s, "t").data)["Message-ID"] for s in SUBSCRIBERS}
    assert len(ids) == len(SUBSCRIBERS)


def test_display_names_survive_quoting_and_encoding(envelope: IssueEnvelope) -> None:
    message = parse(build_message(envelope, SUBSCRIBERS[2], "t").data)
    assert message["To"].addresses[0].display_name == 'Zoë O\'Brien, PhD <"x">'
    assert message["To"].addresses[0].addr_spec == "zoe@example.com"


def test_name_with_line_breaks_cannot_inject_headers(envelope: IssueEnvelope) -> None:
    sneaky = Subscriber("ann@example.com", "Ann\r\nBcc: victim@example.net")
    message = parse(build_message(envelope, sneaky, "t").data)
    assert message["Bcc"] is None
    assert message["To"].addresses[0].addr_spec == "ann@example.com"


def test_non_ascii_address_is_marked_for_smtputf8(envelope: IssueEnvelope) -> None:
    built = build_message(envelope, Subscriber("zoë@exämple.com", "Zoë"), "t")
    assert built.smtputf8 and built.recipient == "zoë@exämple.com"
    message = email.message_from_string(built.data.decode("utf-8"), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "zoë@exämple.com"
    assert not build_message(envelope, SUBSCRIBERS[0], "t").smtputf8


def test_no_https_unsubscribe_url_means_mailto_only(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config = replace(config, newsletter=replace(config.newsletter, unsubscribe_url=None))
    message = parse(build_message(envelope_for(config, RENDERED, NOW), SUBSCRIBERS[0], "t").data)
    assert message["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe%20t>"
    assert message["List-Unsubscribe-Post"] is None


def test_encoded_body_pre_encodes_static_lines_and_notices_a_mismatch() -> None:
    body = EncodedBody(
        "static line\nHello %%NAME%%\nmore static\n",
        "static line\nHello MARK\nmore static\n",
        "MARK",
    )
    assert body.usable and body.personal == ["Hello %%NAME%%"]
    assert body.encode(["Hello Zoë"]) == b"static line\r\nHello Zo=C3=AB\r\nmore static\r\n"
    assert not EncodedBody("a\nb\n", "a\nB\n", "MARK").usable
    assert not EncodedBody("a\nb\n", "a\nb\nc\n", "MARK").usable


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(tmp_path: Path) -> None:
    key_path, record = make_dkim_key(tmp_path)
    config = make_config(
        tmp_path,
        f"  dkim:\n    selector: digest\n    domain: example.org\n    key_file: {key_path.name}\n",
    )
    envelope = envelope_for(config, RENDERED, NOW, dkim_key=load_dkim(config))
    data = build_message(envelope, SUBSCRIBERS[2], "tok").data
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert looked_up == [b"digest._domainkey.example.org."]
    signature = parse(data)["DKIM-Signature"].replace(" ", "").lower()
    signed = signature.split("h=")[1].split(";")[0].split(":")
    assert {"from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= set(signed)
    tampered = data.replace(b"token=tok>", b"token=evil>")
    assert tampered != data
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_unreadable_or_bad_dkim_key_is_a_config_error(tmp_path: Path) -> None:
    dkim_config = (
        "  dkim:\n    selector: digest\n    domain: example.org\n    key_file: nokey.pem\n"
    )
    with pytest.raises(ConfigError, match=r"smtp\.dkim\.key_file: cannot read .*nokey\.pem"):
        load_dkim(make_config(tmp_path, dkim_config))
    (tmp_path / "nokey.pem").write_text("not a key", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a usable private key"):
        load_dkim(make_config(tmp_path, dkim_config))


DOTTED = RenderedIssue(
    "Dots",
    f".starts the part\n<p>{NAME_PLACEHOLDER}</p>\n.{NAME_PLACEHOLDER} begins a personal line\n"
    f"{'x' * 75}.dot after a soft break\n.\n..\n",
    f".text too\n.{NAME_PLACEHOLDER}\n{UNSUBSCRIBE_PLACEHOLDER}\n",
)


@pytest.mark.parametrize("subscriber", [*SUBSCRIBERS, Subscriber("dot@example.com", ".Dot")])
@pytest.mark.parametrize("rendered", [RENDERED, DOTTED], ids=["issue", "dots"])
def test_the_wire_form_built_with_the_message_is_its_data_dot_stuffed(
    tmp_path: Path, subscriber: Subscriber, rendered: RenderedIssue
) -> None:
    built = build_message(envelope_for(make_config(tmp_path), rendered, NOW), subscriber, "t")
    assert built.wire == wire_format(built.data)


def test_the_wire_form_of_a_dkim_signed_message_is_its_data_dot_stuffed(tmp_path: Path) -> None:
    key_path, _ = make_dkim_key(tmp_path)
    config = make_config(
        tmp_path,
        f"  dkim:\n    selector: digest\n    domain: example.org\n    key_file: {key_path.name}\n",
    )
    envelope = envelope_for(config, DOTTED, NOW, dkim_key=load_dkim(config))
    built = build_message(envelope, SUBSCRIBERS[2], "tok")
    assert built.wire == wire_format(built.data)


def test_the_wire_form_when_personal_lines_cannot_be_told_apart(tmp_path: Path) -> None:
    # A name that also changes a static line (the marker missing) makes the builder encode
    # the whole personalised part: the wire form follows it.
    odd = RenderedIssue("Odd", f".a\n{NAME_PLACEHOLDER}\n", f".b\n{NAME_PLACEHOLDER}\n")
    built = build_message(envelope_for(make_config(tmp_path), odd, NOW), SUBSCRIBERS[0], "t")
    assert built.wire == wire_format(built.data)


# Names a reader could type, or an editor could paste into the subscriber file: each must stay
# a display name, whatever quoting, encoding or folding the message builder applies.
HOSTILE_NAMES = [
    "Eve <eve@evil.example>, x",
    '"a@b.c"',
    "=?utf-8?q?evil=40example.org?=",
    "Zo\u00eb =?utf-8?b?ZXZpbEBleGFtcGxlLm9yZw==?= <x@y.example>",
    'a\\" <victim@example.net>, "b',
    "Ann\r\nBcc: victim@example.net",
    "Ann\rTo: victim@example.net",
    "Ann\x00Bcc: victim@example.net",
    "Ann\u2028Bcc: victim@example.net\u2029",
    "\u202eten.elpmaxe@live\u202c \u2066x\u2069",
    "x" * 500,
    "\u00e9" * 300 + "@evil.example",
    "Ann\x1b[31m\x7f\x85\ufeff\u200b",
]


def header_lines(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def assert_only_the_recipient(data: bytes, name: str, address: str) -> None:
    """The message's To header names exactly `address`, with `name` only as display text, and
    no header came from the name."""
    lines = header_lines(data)
    assert all(len(line) <= 998 for line in lines)
    (first,) = [n for n, line in enumerate(lines) if line.lower().startswith(b"to:")]
    last = first + 1
    while last < len(lines) and lines[last][:1] in (b" ", b"\t"):
        last += 1
    raw_to = b"\r\n".join(lines[first:last])
    text = raw_to.decode("utf-8")
    assert not any(ord(c) < 32 and c not in "\r\n" for c in text), text
    assert "\u2028" not in text and "\u202e" not in text
    message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    for other in ("Bcc", "Cc"):
        assert message[other] is None
    assert len(message.get_all("To") or []) == 1
    (recipient,) = message["To"].addresses
    assert recipient.addr_spec == address
    shown = display_name(name)
    # The email package puts a space between adjacent encoded words (RFC 2047 says to drop
    # it), so compare without whitespace; the characters must be exactly the name's.
    assert "".join(recipient.display_name.split()) == "".join(shown.split())
    assert rfc2047_display_name(text) == shown


def rfc2047_display_name(raw_to: str) -> str:
    """The display name in a raw To header, read as RFC 2047 says (whitespace between encoded
    words dropped) and quoted strings taken literally."""
    value = " ".join(raw_to.split(":", 1)[1].split())
    if "<" not in value:
        return ""
    phrase = value.rsplit("<", 1)[0].strip()
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return str(email.header.make_header(email.header.decode_header(phrase)))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("address", ["ann@example.com", "zo\u00eb@example.com"])
def test_a_name_never_adds_an_address_or_a_header_to_an_issue(
    envelope: IssueEnvelope, name: str, address: str
) -> None:
    built = build_message(envelope, Subscriber(address, name), "t")
    assert_only_the_recipient(built.data, name, address)
    assert built.smtputf8 == (not address.isascii())
    # The greeting shows the same name as the To header.
    _, text = personalise(RENDERED, Subscriber(address, name), "u")
    assert f"Hello {display_name(name)}," in text


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("address", ["ann@example.com", "zo\u00eb@example.com"])
def test_a_name_never_adds_an_address_or_a_header_to_a_sign_up_email(
    tmp_path: Path, name: str, address: str
) -> None:
    built = transactional_message(
        make_config(tmp_path),
        Subscriber(address, name),
        "Confirm",
        "text",
        "<p>html</p>",
        NOW,
        None,
    )
    assert_only_the_recipient(built.data, name, address)
    assert built.smtputf8 == (not address.isascii())


def test_display_names_are_one_line_of_visible_text() -> None:
    assert display_name("  Ann \t Lee\r\n") == "Ann Lee"
    assert display_name("Ann\x00\x1b\x7f Lee\u200b\ufeff\u202e") == "Ann Lee"
    assert display_name("Ann\u2028Lee\u00a0Jr") == "Ann Lee Jr"
    assert display_name("\u0628\u200c\u0647") == "\u0628\u200c\u0647"  # a joiner stays
    assert display_name("Zo\u00eb " * 100) == ("Zo\u00eb " * 25).strip()
    assert len(display_name("x" * 500)) == 100


def test_text_with_any_line_ending_is_sent_with_crlf() -> None:
    body = EncodedBody("a\r\nb\rc\nd", "a\r\nb\rc\nd", "MARK")
    assert body.usable
    assert body.encode([]) == b"a\r\nb\r\nc\r\nd"


@pytest.mark.parametrize("width", range(70, 80))
@pytest.mark.parametrize("space", [" ", "\t"])
def test_a_line_ending_in_a_space_or_tab_stays_within_76_characters(width: int, space: str) -> None:
    text = "x" * width + space + "\n" + "y" * width + space
    encoded = EncodedBody(text, text, "MARK").encode([])
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    assert quopri.decodestring(encoded).replace(b"\r\n", b"\n") == text.encode("ascii")


def test_the_bounce_sender_without_a_token_drops_the_placeholder_and_its_separator() -> None:
    assert bounce_sender("bounces+{token}@example.org", "d@example.org", "") == (
        "bounces@example.org"
    )
    assert bounce_sender("bounces{token}@example.org", "d@example.org", "") == (
        "bounces@example.org"
    )
    assert bounce_sender("b-{token}@example.org", "d@example.org", "7-x") == "b-7-x@example.org"
    assert bounce_sender(None, "d@example.org", "7-x") == "d@example.org"


def test_a_message_id_names_the_delivery_only_with_both_reference_and_tag() -> None:
    assert bounce_message_id("7", "tag", "example.org").startswith("<d7.tag.")
    for reference, tag in (("7", ""), ("", "tag")):
        plain = bounce_message_id(reference, tag, "example.org")
        assert not plain.startswith("<d") and plain.endswith("@example.org>")


def test_a_from_without_an_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"newsletter\.from: expected 'Name <address@domain>'"):
        sender_address("Collaborate CIC")


def test_the_list_id_is_a_bounded_slug_under_our_domain_and_a_quote_free_phrase() -> None:
    title = 'Say "hi"\\ ' + "Ab1" * 30
    assert list_id(title, "example.org") == (
        '"'
        + ("Say hi " + "Ab1" * 30)[:60]
        + '" <'
        + ("say-hi-" + "ab1" * 30)[:40]
        + ".example.org>"
    )
    assert list_id("!!!", "example.org") == '"!!!" <digest.example.org>'


def test_a_token_is_one_path_segment_in_the_unsubscribe_url(tmp_path: Path) -> None:
    envelope = envelope_for(make_config(tmp_path), RENDERED, NOW)
    https, mailto = unsubscribe_links(envelope, "a/b+c")
    assert https == "https://example.org/unsubscribe?token=a%2Fb%2Bc"
    assert mailto == "mailto:digest@example.org?subject=unsubscribe%20a/b%2Bc"


def test_the_preferences_link_needs_sign_up_on_and_a_public_url(tmp_path: Path) -> None:
    config = make_config(tmp_path, "signup:\n  enabled: true\n")
    assert config.public_url == "https://example.org"
    with_signup = envelope_for(config, RENDERED, NOW)
    assert with_signup.preferences_url_template == "https://example.org/preferences?token={token}"
    off = replace(config, signup=replace(config.signup, enabled=False))
    assert envelope_for(off, RENDERED, NOW).preferences_url_template is None


def test_without_a_return_path_the_envelope_sender_is_the_from_address(tmp_path: Path) -> None:
    config = make_config(tmp_path, "")
    config = replace(config, newsletter=replace(config.newsletter, reply_to="team@example.org"))
    built = build_message(envelope_for(config, RENDERED, NOW), SUBSCRIBERS[0], "t")
    assert built.sender == "digest@example.org"
    assert parse(built.data)["Reply-To"] == "team@example.org"


def dkim_config(tmp_path: Path, extra: str = "") -> tuple[Config, bytes]:
    key_path, record = make_dkim_key(tmp_path)
    dkim_settings = (
        f"  dkim:\n    selector: digest\n    domain: example.org\n    key_file: {key_path.name}\n"
    )
    return make_config(tmp_path, dkim_settings + extra), record


def test_a_sign_up_email_is_a_signed_two_part_message_with_its_own_bounce_address(
    tmp_path: Path,
) -> None:
    config, record = dkim_config(tmp_path, '  return_path: "bounces+{token}@example.org"\n')
    config = replace(config, newsletter=replace(config.newsletter, reply_to="team@example.org"))
    built = transactional_message(
        config,
        Subscriber("ann@example.com", "Ann"),
        "Confirm   your\n subscription",
        "Click the link.",
        "<p>Click the link.</p>",
        NOW,
        load_dkim(config),
        bounce_tag="abc",
    )
    assert built.sender == "bounces+s-abc@example.org"
    assert built.recipient == "ann@example.com" and not built.smtputf8
    assert dkim.verify(built.data, dnsfunc=lambda name, timeout=5: record)
    message = parse(built.data)
    assert message["From"] == "Collaborate CIC <digest@example.org>"
    assert message["To"] == "Ann <ann@example.com>"
    assert message["Subject"] == "Confirm your subscription"
    assert message["Date"] == "Mon, 30 Nov 2026 08:00:00 +0000"
    assert message["Message-ID"].startswith("<ds.abc.")
    assert message["Message-ID"].endswith("@example.org>")
    assert message["Reply-To"] == "team@example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part["Content-Transfer-Encoding"] == "quoted-printable" for part in parts)
    assert body(message, "plain") == "Click the link.\n"
    assert body(message, "html") == "<p>Click the link.</p>\n"


def test_a_sign_up_email_without_a_tag_uses_the_plain_envelope_sender(tmp_path: Path) -> None:
    config = make_config(tmp_path, '  return_path: "bounces+{token}@example.org"\n')
    to_zoe = Subscriber("zo\u00eb@example.com", "Zoë")
    built = transactional_message(config, to_zoe, "Hi", "t", "<p>h</p>", NOW, None)
    assert built.sender == "bounces@example.org"
    assert built.smtputf8 and "zo\u00eb@example.com".encode() in built.data
    assert not parse(built.data)["Message-ID"].startswith("<d")
    assert built.data.startswith(b"To: ")


def test_a_signature_with_bare_line_feeds_is_sent_with_crlf() -> None:
    assert _crlf(b"DKIM-Signature: a=1;\n b=2\n") == b"DKIM-Signature: a=1;\r\n b=2\r\n"
    assert _crlf(b"X: a\r b\r\n c\n") == b"X: a\r\n b\r\n c\r\n"
    assert _crlf(b"X: a\r\n b\r\n") == b"X: a\r\n b\r\n"


def test_a_long_to_header_folds_before_78_characters_never_after_to() -> None:
    name = "Aa" * 20
    header = to_header(name, "someone.with.a.long.address@example.com")
    lines = header.decode("ascii").split("\r\n")
    assert lines[0] == f'To: "{name}"'
    assert lines[1] == " <someone.with.a.long.address@example.com>" and lines[2] == ""
    # 78 characters fit on the first line; 79 do not.
    fits = to_header("Ann", "a" * 54 + "@example.com")
    assert fits == ('To: "Ann" <' + "a" * 54 + "@example.com>\r\n").encode("ascii")
    folded = to_header("Ann", "a" * 55 + "@example.com")
    assert folded == ('To: "Ann"\r\n <' + "a" * 55 + "@example.com>\r\n").encode("ascii")
    alone = to_header("", "b" * 80 + "@example.com")
    assert alone == ("To: " + "b" * 80 + "@example.com\r\n").encode("ascii")


def test_an_issue_links_each_reader_to_their_preferences_and_names_the_delivery(
    tmp_path: Path,
) -> None:
    config = make_config(
        tmp_path, '  return_path: "bounces+{token}@example.org"\nsignup:\n  enabled: true\n'
    )
    text = TEXT + f"Preferences: {placeholder(RENDERED.marker, 'PREFERENCES_URL')}\n"
    rendered = RenderedIssue(RENDERED.subject, HTML, text, marker=RENDERED.marker)
    envelope = envelope_for(config, rendered, NOW, reference="12")
    built = build_message(envelope, SUBSCRIBERS[0], "t", "p/q", bounce_tag="tag")
    assert built.sender == "bounces+12-tag@example.org"
    assert parse(built.data)["Message-ID"].startswith("<d12.tag.")
    plain = body(parse(built.data), "plain")
    assert "Preferences: https://example.org/preferences?token=p%2Fq\n" in plain
    untagged = build_message(envelope, SUBSCRIBERS[0], "t")
    assert untagged.sender == "bounces@example.org"
    assert "Preferences: \n" in body(parse(untagged.data), "plain")
