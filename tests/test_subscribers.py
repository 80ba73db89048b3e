"""The subscriber file: a file that is no list is one line with file:line; ASCII stays ASCII."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.core.errors import ConfigError
from digest.readers.subscribers import load_subscribers, parse_subscribers
from tests.conftest import Project
from tests.test_config import assert_refused_fast, billion_laughs, digest_measured


def check_fails(project: Project, name: str, content: bytes) -> str:
    """Point config.yaml at a subscriber file with `content`; `digest check`'s one error line."""
    (project.root / name).write_bytes(content)
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("subscribers: subscribers.csv", f"subscribers: {name}"))
    result = project.run("check")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert lines[0].startswith(f"Error: {project.root / name}:")
    return lines[0].removeprefix(f"Error: {project.root / name}:")


def test_a_field_longer_than_csv_allows_names_the_line(project: Project) -> None:
    content = b"email,name\nann@example.com,Ann\nbob@example.com," + b"B" * 200_000 + b"\n"
    message = check_fails(project, "subscribers.csv", content)
    assert message.startswith("3: not a readable CSV row (field larger than field limit")
    assert "is this the subscriber list?" in message


def test_binary_content_is_not_utf8(project: Project) -> None:
    content = b"email,name\nann@example.com,Ann\n\x89PNG\r\n\x1a\n\xff\xd8\xff\xe0"
    message = check_fails(project, "subscribers.csv", content)
    assert message == "3: not UTF-8 text (byte 0x89); save the subscriber list as UTF-8"


def test_a_nul_byte_means_a_binary_file(project: Project) -> None:
    content = b"email,name\nann@example.com,Ann\nbob@exa\x00mple.com,Bob\n"
    message = check_fails(project, "subscribers.csv", content)
    assert message == (
        "3: contains a NUL byte: this looks like a binary file, not a subscriber list"
    )


def test_a_csv_without_an_email_column(project: Project) -> None:
    message = check_fails(project, "subscribers.csv", b"ann@example.com,Ann\nbob@example.com,Bob\n")
    assert message == (
        "1: the first line must be a header naming an 'email' column (e.g. email,name),"
        " got 'ann@example.com,Ann'"
    )


def test_yaml_syntax_error_names_the_line(project: Project) -> None:
    content = b"- email: ann@example.com\n  name: Ann\n- email: [bob@example.com\n"
    message = check_fails(project, "subscribers.yaml", content)
    assert message.startswith("4: YAML syntax error:")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"ann@example.com: Ann\n",
            "1: expected a YAML list of entries such as `- email: ann@example.org`",
        ),
        (
            b"- ann@example.com\n- [bob@example.com, Bob]\n",
            "2: expected an entry with email: (and name:), or an address",
        ),
        (b"- email: ann@example.com\n  name: [Ann]\n", "1: name: expected text; put it in quotes"),
        (
            b"- email: ann@example.com\n- email: bob@example.com\n  email: eve@example.com\n",
            "3: [1].email: duplicate key (first on line 2)",
        ),
    ],
)
def test_yaml_of_the_wrong_shape(project: Project, content: bytes, expected: str) -> None:
    assert check_fails(project, "subscribers.yaml", content).startswith(expected)


def test_alias_bomb_in_the_yaml_subscriber_file_is_refused_fast(project: Project) -> None:
    (project.root / "people.yaml").write_text(billion_laughs(), encoding="utf-8")
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("subscribers.csv", "people.yaml"))
    result = digest_measured(project, "check")
    assert_refused_fast(
        result, f"{project.root / 'people.yaml'}:", "aliases (*name) here expand to more than"
    )


def test_yaml_list_of_addresses_and_entries_is_read() -> None:
    listed = parse_subscribers(
        Path("people.yaml"),
        "- ann@example.com\n- email: bob@example.com\n  name: Bob\n- email: nope\n",
    )
    assert [(s.email, s.name) for s in listed.subscribers] == [
        ("ann@example.com", ""),
        ("bob@example.com", "Bob"),
    ]
    assert len(listed.invalid) == 1 and listed.invalid[0].startswith("people.yaml:4: 'nope'")


def test_every_address_is_kept_in_the_canonical_form_and_its_forms_are_one_person() -> None:
    listed = parse_subscribers(
        Path("subscribers.csv"),
        "email,name\nuser@xn--bcher-kva.example,Ascii\nZo\u00eb@B\u00fccher.example,Zoe\n"
        "USER@XN--BCHER-KVA.EXAMPLE,Same again\nuser@b\u00fccher.example,Same in Unicode\n"
        "Ann.Smith@Example.COM,Ann\nann.smith@example.com,Ann again\n",
    )
    assert [s.email for s in listed.subscribers] == [
        "user@xn--bcher-kva.example",
        "zo\u00eb@xn--bcher-kva.example",
        "ann.smith@example.com",
    ]
    assert listed.duplicates == (
        "subscribers.csv:4: user@xn--bcher-kva.example",
        "subscribers.csv:5: user@xn--bcher-kva.example",
        "subscribers.csv:7: ann.smith@example.com",
    )


def test_control_characters_in_names_become_spaces() -> None:
    listed = parse_subscribers(
        Path("people.yaml"), '- email: ann@example.com\n  name: "Ann\\r\\nBcc: x@evil.example"\n'
    )
    assert listed.subscribers[0].name == "Ann Bcc: x@evil.example"


def test_punycode_subscriber_gets_mail_without_smtputf8(project: Project) -> None:
    project.write_subscribers("user@xn--bcher-kva.example,B\u00fccher fan")
    assert load_subscribers(project.root / "subscribers.csv").subscribers[0].email.isascii()
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    [received] = project.smtp.received
    assert received.recipients == ("user@xn--bcher-kva.example",)
    assert "SMTPUTF8" not in received.mail_options
    assert received.data.isascii()
    assert received.message["To"].addresses[0].addr_spec == "user@xn--bcher-kva.example"


def test_missing_subscriber_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="subscribers file not found"):
        load_subscribers(tmp_path / "none.csv")


CHECKED = [
    "reader@example.com",
    "Reader.Name+tag@Example.COM",
    "x@xn--bcher-kva.example",
    "a@XN--BCHER-KVA.example",
    "o'brien@example.ie",
    "{x}@example.com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a@" + ("b" * 63 + ".") * 3 + "com",
    "a@" + ("b" * 63 + ".") * 4 + "com",
    "a..b@example.com",
    ".a@example.com",
    "a@example",
    "a@-example.com",
    "a@example..com",
    "a@example.com.",
    "u@example.test",
    "user@localhost",
    "a@[127.0.0.1]",
    '"quoted"@example.com',
    "zoë@example.com",
    "a@bücher.example",
    "a b@example.com",
    "a@@example.com",
]


def test_each_domain_checked_once_gives_the_canonical_forms_own_verdicts() -> None:
    from digest.core.addresses import AddressError, canonical_address
    from digest.readers.subscribers import AddressChecker

    def verdict(check: object, raw: str) -> object:
        try:
            return check(raw)  # type: ignore[operator]
        except AddressError as error:
            return f"refused: {error}"

    checker = AddressChecker()
    for raw in CHECKED * 2:  # the second time round, every domain comes from the cache
        assert verdict(checker.check, raw) == verdict(canonical_address, raw), raw
