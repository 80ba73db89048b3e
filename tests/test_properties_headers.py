"""Properties of values that go into mail headers: whatever the input, no CR, LF or NUL reaches a
header. A config value is refused or kept as it was; a reader's name is encoded, never pasted."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from hypothesis import given
from hypothesis import strategies as st

from digest.core import headervalues
from digest.mail.message import list_id, to_header
from tests.support.properties import examples

BREAKING = re.compile(r"[\r\n\x00]")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Text leaning towards what breaks headers: line breaks, NULs, separators, brackets, quotes.
pieces = st.one_of(
    st.sampled_from(["\r", "\n", "\r\n", "\x00", "\t", ",", "<", ">", '"', "@", " ", ":"]),
    st.sampled_from(["=?utf-8?q?", "?=", "\u2028", "\x85", "\x7f", "\\", ";", "\ud800"]),
    st.characters(),
)
awkward = st.lists(pieces, max_size=30).map("".join)
addressy = st.builds(
    lambda name, local, domain: f"{name}<{local}@{domain}>",
    awkward,
    awkward,
    st.one_of(awkward, st.just("example.org")),
)

CHECKS = {
    "one_line": headervalues.one_line,
    "header_text": headervalues.header_text,
    "header_url": headervalues.header_url,
    "printable_ascii": headervalues.printable_ascii,
    "dns_name": headervalues.dns_name,
    "mailbox with a name": lambda value: headervalues.mailbox(value, allow_name=True),
    "bare mailbox": lambda value: headervalues.mailbox(value, allow_name=False),
}


@examples(300)
@given(st.one_of(awkward, addressy), st.sampled_from(sorted(CHECKS)))
def test_a_header_value_is_refused_or_kept_unchanged_and_never_breaks_a_line(
    value: str, check: str
) -> None:
    try:
        kept = CHECKS[check](value)
    except ValueError as error:
        assert str(error)  # a sentence for the editor, never an empty message
        return
    assert kept == value
    assert not CONTROL.search(kept)
    assert len(kept) <= headervalues.MAX_HEADER_TEXT or check == "dns_name"


def unfolded_lines(block: bytes) -> list[bytes]:
    """The header lines of a CRLF block, continuation lines joined to the line they continue."""
    assert block.endswith(b"\r\n")
    lines: list[bytes] = []
    for line in block[:-2].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            lines[-1] += line
        else:
            lines.append(line)
    return lines


@examples(400)
@given(awkward)
def test_a_readers_name_never_adds_a_line_or_an_address_to_the_to_header(name: str) -> None:
    header = to_header(name, "ann@example.com")
    assert b"\x00" not in header
    assert b"\r" not in header.replace(b"\r\n", b"")
    assert b"\n" not in header.replace(b"\r\n", b"")
    (line,) = unfolded_lines(header)
    assert line.startswith(b"To: ")
    parsed = email.message_from_bytes(header + b"\r\n", policy=email.policy.SMTP)
    assert isinstance(parsed, EmailMessage)
    assert [address.addr_spec for address in parsed["To"].addresses] == ["ann@example.com"]


@examples(200)
@given(awkward)
def test_a_list_id_never_breaks_its_line(title: str) -> None:
    # The title reaches list_id only through the config's check (newsletter.title).
    try:
        headervalues.header_text(title)
    except ValueError:
        return
    value = list_id(title, "example.org")
    assert not BREAKING.search(value)
    assert value.endswith(".example.org>")
