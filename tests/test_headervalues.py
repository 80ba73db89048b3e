"""Config values that end up in mail and HTTP headers: each rule, and the sentence an editor
reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config.schema import load_config
from digest.core import headervalues
from digest.core.errors import ConfigError

# -- List-Unsubscribe URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("character", "name"),
    [(" ", "a space"), (",", "a comma"), ("<", "<"), (">", ">")],
)
def test_a_list_unsubscribe_url_refuses_what_would_split_or_close_its_brackets(
    character: str, name: str
) -> None:
    # Inside List-Unsubscribe the URL sits in <...> in a comma-separated list: a comma would
    # split it into two URLs, an angle bracket would end it early.
    url = f"https://example.org/u?token={{token}}&x=a{character}b"
    with pytest.raises(ValueError) as raised:
        headervalues.header_url(url)
    assert str(raised.value) == f"contains {name}; percent-encode it"


@pytest.mark.parametrize("character", [",", "<", ">"])
def test_a_config_with_such_a_url_is_refused_naming_its_line(
    tmp_path: Path, character: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "newsletter:\n"
        "  title: News\n"
        "  from: digest@example.org\n"
        f'  unsubscribe_url: "https://example.org/u?token={{token}}&a{character}b"\n'
        "feeds:\n  - name: Blog\n    url: https://example.org/feed\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path, {})
    assert "config.yaml:4: newsletter.unsubscribe_url: contains" in str(raised.value)
    assert "percent-encode it" in str(raised.value)


def test_a_percent_encoded_url_is_kept_as_written() -> None:
    url = "https://example.org/u?token={token}&list=a%2Cb%3Cc%3E%20d"
    assert headervalues.header_url(url) == url


def test_a_non_ascii_url_is_refused_with_how_to_write_it() -> None:
    with pytest.raises(ValueError) as raised:
        headervalues.header_url("https://b\u00fccher.example/u?token={token}")
    assert str(raised.value) == (
        "contains non-ASCII characters; percent-encode the path and write the domain in its"
        " xn-- form"
    )


# -- one line, no control characters -----------------------------------------------------------


@pytest.mark.parametrize(
    ("character", "name"),
    [
        ("\r", "a carriage return (CR)"),
        ("\n", "a line break (LF)"),
        ("\x00", "a NUL byte"),
        ("\t", "the control character U+0009"),
        ("\x7f", "the control character U+007F"),
        ("\x85", "the control character U+0085"),
        ("\u2028", "the control character U+2028"),
        ("\u2029", "the control character U+2029"),
    ],
)
def test_a_control_character_is_refused_by_name(character: str, name: str) -> None:
    for check in (
        headervalues.one_line,
        headervalues.header_text,
        headervalues.header_url,
        headervalues.printable_ascii,
    ):
        with pytest.raises(ValueError) as raised:
            check(f"News{character}X-Evil: 1")
        assert str(raised.value) == (
            f"contains {name}, which could break or add a mail header; write it on one line"
            " with no control characters"
        )


def test_text_up_to_the_limit_is_kept_and_longer_is_refused() -> None:
    longest = "x" * headervalues.MAX_HEADER_TEXT
    assert headervalues.one_line(longest) == longest
    with pytest.raises(ValueError, match=r"^is longer than 900 characters; shorten it$"):
        headervalues.one_line(longest + "x")


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError) as raised:
        headervalues.one_line("News \ud800")
    assert str(raised.value) == "contains characters that cannot be encoded (a lone surrogate)"


def test_header_text_may_be_unicode_but_not_blank() -> None:
    assert (
        headervalues.header_text("Caf\u00e9 news \u2014 weekly") == "Caf\u00e9 news \u2014 weekly"
    )
    for blank in ("", "   "):
        with pytest.raises(ValueError, match=r"^is empty; write some text$"):
            headervalues.header_text(blank)


def test_printable_ascii_refuses_other_characters() -> None:
    assert headervalues.printable_ascii("digest/0.2 (+https://example.org)") == (
        "digest/0.2 (+https://example.org)"
    )
    with pytest.raises(ValueError, match=r"^must be ASCII"):
        headervalues.printable_ascii("digest/0.2 caf\u00e9")


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["news@example.org", "Org <news@example.org>", '"Org, Ltd" <news@example.org>'],
)
def test_a_mailbox_with_a_name_is_kept_as_written(value: str) -> None:
    assert headervalues.mailbox(value, allow_name=True) == value


def test_a_bare_mailbox_refuses_a_name() -> None:
    assert headervalues.mailbox("news@example.org", allow_name=False) == "news@example.org"
    with pytest.raises(ValueError, match=r"^expected a bare address such as news@example\.org"):
        headervalues.mailbox("Org <news@example.org>", allow_name=False)


@pytest.mark.parametrize(
    ("value", "allow_name", "expected"),
    [
        (
            "Org, Ltd <news@example.org>",
            True,
            'expected one address such as "Name" <news@example.org>, got \'Org, Ltd'
            " <news@example.org>'; put a name with a comma in double quotes",
        ),
        (
            "a@example.org, b@example.org",
            False,
            "expected one address such as news@example.org, got 'a@example.org, b@example.org'",
        ),
        (
            "a@example.org b@example.org",
            True,
            'expected one address such as "Name" <news@example.org>,'
            " got 'a@example.org b@example.org'",
        ),
        ("news-at-example.org", True, "expected one address such as"),
        ("news@localhost", False, "'news@localhost' is not a valid email address: The part"),
        (
            "news@b\u00fccher.example",
            False,
            "not an ASCII address, which not every mail server accepts; write it as"
            " news@xn--bcher-kva.example",
        ),
        ("", True, "expected one address"),
    ],
)
def test_a_mailbox_that_is_not_one_address_is_refused(
    value: str, allow_name: bool, expected: str
) -> None:
    with pytest.raises(ValueError) as raised:
        headervalues.mailbox(value, allow_name=allow_name)
    assert expected in str(raised.value)
    if "," not in value or not allow_name:
        assert "double quotes" not in str(raised.value)
    if expected.startswith("expected one address"):
        assert str(raised.value).endswith(f"got {value!r}") or "double quotes" in expected


# -- DNS names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["digest", "example.org", "s1._domainkey", "a-b.example", "x" * 63 + ".org"]
)
def test_dns_names_are_kept(value: str) -> None:
    assert headervalues.dns_name(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "-digest", "digest-", "a..b", "s\u00e9l", "a b", "x" * 64, ".".join(["abc"] * 64)],
)
def test_what_is_not_a_dns_name_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"^expected a DNS name such as example\.org"):
        headervalues.dns_name(value)
