"""Config mistakes: each names file, line and key, says what is valid, and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from digest.config.schema import load_config, parse_config
from digest.core.errors import ConfigError
from digest.core.redact import redact_url
from digest.store.location import DatabaseURL
from tests.conftest import Project

VALID = """\
newsletter:
  title: Collaborate Weekly
  from: "Collaborate CIC <digest@example.org>"
feeds:
  - name: From the blog
    url: https://example.org/blog/feed
smtp:
  host: localhost
  port: 587
"""


def error_for(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yaml", Path("/srv/news"), environ or {})
    return str(caught.value)


def test_valid_config_gets_defaults_and_resolves_paths() -> None:
    config = parse_config(VALID, "config.yaml", Path("/srv/news"), {})
    assert config.newsletter.from_address == "Collaborate CIC <digest@example.org>"
    assert config.digest.max_posts_per_section == 10
    assert config.digest.lookback_days == 14
    assert config.smtp.security == "starttls"
    assert config.state_path == Path("/srv/news/digest.sqlite3")
    assert config.subscribers_path == Path("/srv/news/subscribers.csv")


def test_wrong_type_names_line_key_and_value() -> None:
    text = VALID.replace("port: 587", "port: twenty-five")
    assert error_for(text) == (
        "config.yaml:9: smtp.port: expected a whole number, got 'twenty-five'"
    )


def test_unknown_key_is_an_error_listing_valid_keys() -> None:
    text = VALID.replace("  port: 587", "  prot: 587")
    message = error_for(text)
    assert message.startswith("config.yaml:9: smtp.prot: unknown key; valid keys here are: host,")
    assert "port" in message


def test_unknown_top_level_key() -> None:
    message = error_for(VALID + "subscriber: people.csv\n")
    assert message.startswith("config.yaml:10: subscriber: unknown key; valid keys here are:")
    assert "subscribers" in message


def test_missing_required_key() -> None:
    text = VALID.replace('  from: "Collaborate CIC <digest@example.org>"\n', "")
    assert error_for(text) == "config.yaml:1: newsletter.from: required key is missing"


def test_no_feeds() -> None:
    text = VALID.split("feeds:")[0] + "feeds: []\n"
    assert error_for(text) == "config.yaml:4: feeds: needs at least one entry"


def test_feed_with_unsupported_scheme() -> None:
    text = VALID.replace("https://example.org/blog/feed", "ftp://example.org/feed")
    assert error_for(text) == (
        "config.yaml:6: feeds[0].url: expected an http(s) URL or a file path, got scheme 'ftp:'"
    )


def test_security_choices() -> None:
    text = VALID + "  security: tls\n"
    assert error_for(text) == (
        "config.yaml:10: smtp.security: expected one of starttls, ssl or none, got 'tls'"
    )


def test_unset_environment_variable_is_named() -> None:
    text = VALID + "  password: ${SMTP_PASSWORD}\n"
    assert error_for(text) == (
        "config.yaml:10: smtp.password: environment variable SMTP_PASSWORD is not set;"
        " set it, or write ${SMTP_PASSWORD:-default}"
    )


def test_environment_variables_and_defaults_expand() -> None:
    text = VALID + "  username: ${SMTP_USERNAME}\n  password: ${SMTP_PASSWORD:-fallback}\n"
    config = parse_config(text, "config.yaml", Path("."), {"SMTP_USERNAME": "mailer"})
    assert config.smtp.username == "mailer"
    assert config.smtp.password == "fallback"


def test_yaml_syntax_error_gives_line() -> None:
    text = VALID.replace("  port: 587", "  port: [587")
    assert error_for(text).startswith("config.yaml:10: YAML syntax error:")


def test_not_a_mapping() -> None:
    assert error_for("- just\n- a list\n").startswith("config.yaml:1: expected a mapping")


def test_bad_filter_regex() -> None:
    text = VALID.replace(
        "    url: https://example.org/blog/feed",
        "    url: https://e.org/f\n    include: ['(unclosed']",
    )
    assert error_for(text).startswith("config.yaml:7: feeds[0].include: '(unclosed' is not a valid")


def test_unsubscribe_url_needs_token_placeholder() -> None:
    text = VALID.replace("feeds:", "  unsubscribe_url: https://example.org/unsubscribe\nfeeds:")
    assert error_for(text) == (
        "config.yaml:4: newsletter.unsubscribe_url: must contain {token} where the"
        " subscriber's token goes: 'https://example.org/unsubscribe'"
    )


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file; create one with `digest init`"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("port: 587", "port: twenty-five"),
            "smtp.port: expected a whole number, got 'twenty-five'",
        ),
        (("  port: 587", "  prot: 587"), "smtp.prot: unknown key; valid keys here are:"),
        (
            ("  port: 587", "  password: ${NOT_SET_ANYWHERE}"),
            "environment variable NOT_SET_ANYWHERE",
        ),
    ],
)
def test_cli_reports_config_errors_in_one_line_with_exit_2(
    project: Project, change: tuple[str, str], expected: str
) -> None:
    project.config.write_text(VALID.replace(*change), encoding="utf-8")
    for command in (["check"], ["preview"], ["send"], ["send", "--dry-run"], ["history"]):
        result = project.run(*command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert lines[0].startswith(f"Error: {project.config}:")
        assert expected in lines[0]
        assert "Traceback" not in result.output
    assert not project.smtp.received
    assert not (project.root / "state.sqlite3").exists()


def test_missing_subscribers_file_is_named(project: Project) -> None:
    (project.root / "subscribers.csv").unlink()
    result = project.run("send")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: {project.root / 'subscribers.csv'}: subscribers file not found; create it"
        " (a CSV with header email,name) or fix `subscribers:` in config.yaml"
    )
    assert not project.smtp.received


def test_every_mistake_is_reported_at_once_in_file_order(project: Project) -> None:
    text = VALID.replace("https://example.org/blog/feed", "ftp://example.org/feed").replace(
        "  port: 587", "  port: twenty\n  hots: mail.example.org"
    )
    project.config.write_text(text, encoding="utf-8")
    result = project.run("check")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert [line.split(": ", 3)[1:3] for line in lines] == [
        [f"{project.config}:6", "feeds[0].url"],
        [f"{project.config}:9", "smtp.port"],
        [f"{project.config}:10", "smtp.hots"],
    ]
    assert all(line.startswith("Error: ") for line in lines)


# -- hostile or mistaken YAML: refused fast, with little memory, as one line ----------------

# Runs the command as a child of a fresh interpreter, whose RUSAGE_CHILDREN then holds only
# that command's peak memory and processor time; they are printed as the last line of stderr.
_MEASURED = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]);"
    " used = resource.getrusage(resource.RUSAGE_CHILDREN);"
    " print(used.ru_maxrss, used.ru_utime + used.ru_stime, file=sys.stderr);"
    " sys.exit(done.returncode)"
)
# Processor seconds, which a busy machine does not stretch as it does wall-clock time.
FAST_SECONDS = 5.0
SMALL_KIB = 250_000


@dataclass(frozen=True)
class Measured:
    """A finished `digest` process: exit code, output, processor time and peak memory."""

    code: int
    stdout: str
    errors: list[str]
    cpu_seconds: float
    peak_kib: int


def digest_measured(project: Project, *args: str, env: dict[str, str] | None = None) -> Measured:
    """Run `python -m digest --config ... ARGS` as a real process and measure it."""
    command = [sys.executable, "-c", _MEASURED, sys.executable, "-m", "digest"]
    done = subprocess.run(
        [*command, "--config", str(project.config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    *errors, usage = done.stderr.strip().splitlines()
    peak, cpu = usage.split()
    return Measured(done.returncode, done.stdout, errors, float(cpu), int(peak))


def assert_refused_fast(result: Measured, where: str, expected: str) -> None:
    assert result.code == 2, result
    assert len(result.errors) == 1, result.errors
    assert result.errors[0].startswith(f"Error: {where}"), result.errors
    assert expected in result.errors[0]
    assert result.cpu_seconds < FAST_SECONDS, result.cpu_seconds
    assert result.peak_kib < SMALL_KIB, result.peak_kib


def billion_laughs(levels: int = 9) -> str:
    names = "abcdefghijklmnop"
    lines = ["newsletter: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*{names[level - 1]}"] * 9)
        lines.append(f"{names[level]}: &{names[level]} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_config_is_refused_fast_with_little_memory(project: Project) -> None:
    project.config.write_text(billion_laughs(), encoding="utf-8")
    result = digest_measured(project, "check")
    assert_refused_fast(result, f"{project.config}:", "aliases (*name) here expand to more than")
    line = int(result.errors[0].split(":")[2])
    assert 3 <= line <= 9


def test_deep_nesting_in_config_is_refused_fast(project: Project) -> None:
    project.config.write_text("feeds: " + "[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
    result = digest_measured(project, "check")
    assert_refused_fast(result, f"{project.config}:1:", "nest more than 64 levels deep")


def test_duplicate_top_level_key_names_both_lines(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text + "feeds:\n  - name: Other\n    url: https://e.org/f\n")
    line = len(text.splitlines()) + 1
    result = digest_measured(project, "check")
    assert_refused_fast(
        result, f"{project.config}:{line}: feeds: duplicate key (first on line 5)", "merge them"
    )
    assert not project.feeds.requests


def test_duplicate_keys_at_any_depth() -> None:
    text = VALID + "  port: 25\n"
    assert error_for(text) == (
        "config.yaml:10: smtp.port: duplicate key (first on line 9); YAML would keep only the"
        " last one: merge them into one"
    )
    nested = VALID.replace("    url: https://example.org/blog/feed", "    url: a\n    url: b")
    assert error_for(nested).startswith("config.yaml:7: feeds[0].url: duplicate key (first on")


def test_aliases_and_merge_keys_within_bounds_still_work() -> None:
    text = VALID.replace(
        "feeds:\n  - name: From the blog\n    url: https://example.org/blog/feed\n",
        "feeds:\n  - &blog\n    name: From the blog\n    url: https://example.org/blog/feed\n"
        "    include: &words [climate, energy]\n"
        "  - <<: *blog\n    name: News\n    exclude: *words\n",
    )
    config = parse_config(text, "config.yaml", Path("."), {})
    assert [feed.name for feed in config.feeds] == ["From the blog", "News"]
    assert config.feeds[1].url == "https://example.org/blog/feed"
    assert config.feeds[1].exclude == ["climate", "energy"]


def test_control_character_in_yaml_names_the_line() -> None:
    text = VALID.replace("host: localhost", "host: local\x07host")
    assert error_for(text) == (
        "config.yaml:8: YAML syntax error: the control character U+0007 is not allowed in a"
        " YAML file; remove it"
    )


def test_config_that_is_not_utf8_names_the_line(project: Project) -> None:
    project.config.write_bytes(VALID.encode("utf-8").replace(b"Weekly", b"W\xe9ekly"))
    result = project.run("check")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: {project.config}:2: not UTF-8 text (byte 0xe9); save the file as UTF-8"
    )


# -- values that become headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("title: Collaborate Weekly", 'title: "Weekly\\r\\nBcc: all@example.net"'),
            "config.yaml:2: newsletter.title: contains a carriage return (CR), which could"
            " break or add a mail header",
        ),
        (
            ("Collaborate CIC <", "Collaborate\\r\\nBcc: all@example.net <"),
            "config.yaml:3: newsletter.from: contains a carriage return (CR)",
        ),
        (
            ("title: Collaborate Weekly", 'title: Weekly\n  subject: "Hi\\nX-Spam: no"'),
            "config.yaml:3: newsletter.subject: contains a line break (LF)",
        ),
        (
            ("title: Collaborate Weekly", 'title: Weekly\n  reply_to: "a@example.org\\0"'),
            "config.yaml:3: newsletter.reply_to: contains a NUL byte",
        ),
        (
            ("digest@example.org", "digest-at-example.org"),
            "config.yaml:3: newsletter.from: expected one address such as"
            " \"Name\" <news@example.org>, got 'Collaborate CIC <digest-at-example.org>'",
        ),
        (
            ('"Collaborate CIC <digest@example.org>"', '"Collaborate, CIC <digest@example.org>"'),
            "put a name with a comma in double quotes",
        ),
        (
            ("digest@example.org", "digest@b\u00fccher.example"),
            "not an ASCII address, which not every mail server accepts; write it as"
            " digest@xn--bcher-kva.example",
        ),
        (
            ("title: Collaborate Weekly", "title: W\n  unsubscribe_mailto: Ann <a@example.org>"),
            "config.yaml:3: newsletter.unsubscribe_mailto: expected a bare address",
        ),
        (
            (
                "title: Collaborate Weekly",
                'title: W\n  unsubscribe_url: "https://example.org/u?t={token}&x=a b"',
            ),
            "config.yaml:3: newsletter.unsubscribe_url: contains a space; percent-encode it",
        ),
        (
            ("  port: 587", '  port: 587\nfetch:\n  user_agent: "bot\\r\\nX-Evil: 1"'),
            "config.yaml:11: fetch.user_agent: contains a carriage return (CR)",
        ),
        (
            (
                "  port: 587",
                "  port: 587\n  dkim:\n    selector: s\u00e9l\n    domain: example.org\n"
                "    key_file: k.pem",
            ),
            "config.yaml:11: smtp.dkim.selector: expected a DNS name",
        ),
    ],
)
def test_header_values_that_could_break_a_header_are_refused(
    change: tuple[str, str], expected: str
) -> None:
    assert expected in error_for(VALID.replace(*change))


def test_unicode_display_name_reaches_the_subscriber_encoded(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("Collaborate CIC <", "Zo\u00eb's Caf\u00e9 \u2615 <"), encoding="utf-8"
    )
    assert project.run("check").exit_code == 0
    assert project.run("send").exit_code == 0
    received = project.smtp.received[0]
    assert received.data.isascii()
    sender = received.message["From"].addresses[0]
    assert sender.display_name == "Zo\u00eb's Caf\u00e9 \u2615"
    assert sender.addr_spec == "digest@example.org"
    assert received.mail_from == "digest@example.org"
    assert not any(line.lower().startswith(b"bcc") for line in received.data.splitlines())


# -- errors never show secrets -----------------------------------------------------------

PASSWORD = "pa55-Wh1sper-7f3e9c"


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        (("  port: 587", "  port: ${SMTP_PASSWORD}"), "got the value of ${SMTP_PASSWORD}"),
        (
            ("https://example.org/blog/feed", "ftp://reader:${SMTP_PASSWORD}@example.org/feed"),
            "feeds[0].url: expected an http(s) URL or a file path, got scheme 'ftp:'",
        ),
        (
            (
                "feeds:",
                '  unsubscribe_url: "http://u:${SMTP_PASSWORD}@example.org/u"\nfeeds:',
            ),
            "must contain {token} where the subscriber's token goes: 'http://***@example.org/u'",
        ),
        (
            ('"Collaborate CIC <digest@example.org>"', "${SMTP_PASSWORD}"),
            "newsletter.from: expected one address such as",
        ),
        (("  port: 587", f"  port: 587\n  password: {len(PASSWORD)}1"), "not shown"),
        (("  port: 587", '  port: 587\n  password: ["${SMTP_PASSWORD}"]'), "expected text"),
        (("  port: 587", "  port: 587\n  password: ${SMTP_PASSWORD}\n  timeout: -1"), "timeout"),
    ],
)
def test_failing_check_never_prints_an_environment_secret(
    project: Project, change: tuple[str, str], shown: str
) -> None:
    project.config.write_text(VALID.replace(*change), encoding="utf-8")
    result = digest_measured(project, "check", env={"SMTP_PASSWORD": PASSWORD})
    assert result.code == 2, result
    output = result.stdout + "\n".join(result.errors)
    assert PASSWORD not in output
    assert shown in output
    assert "Traceback" not in output


def test_the_value_of_a_variable_is_named_by_the_variable() -> None:
    text = VALID.replace('"Collaborate CIC <digest@example.org>"', "${SENDER}")
    message = error_for(text, {"SENDER": "someone-at-example.org"})
    assert message == (
        "config.yaml:3: newsletter.from: expected one address such as"
        ' "Name" <news@example.org>, got the value of ${SENDER}'
    )


def test_a_list_item_from_a_variable_is_named_by_the_variable() -> None:
    text = VALID.replace(
        "    url: https://example.org/blog/feed",
        '    url: https://e.org/f\n    include: [climate, "${WORDS}"]',
    )
    message = error_for(text, {"WORDS": "energy(unclosed"})
    assert message.startswith("config.yaml:7: feeds[0].include: ${WORDS} is not a valid regular")
    assert "energy" not in message


@pytest.mark.parametrize(
    ("written", "error"),
    [
        ("port: .inf", "config.yaml:9: smtp.port: Input should be a finite number"),
        (
            "port: 587\n  timeout: soon",
            "config.yaml:10: smtp.timeout: expected a number, got 'soon'",
        ),
        (
            "port: 587\n  1: x",
            "config.yaml:7: smtp[1]: Keys should be strings",
        ),
        ("port: 587\nstate: 5", "config.yaml:10: state: expected text, got 5"),
        ("port: 587\nsubscribers: [a]", "config.yaml:10: subscribers: expected text, got ['a']"),
        (
            "port: 587\nnewsletter: the weekly one",
            "config.yaml:10: newsletter: expected a mapping of keys (key: value lines, indented)",
        ),
        (
            "port: 587\nfeeds: https://example.org/blog/feed",
            "config.yaml:10: feeds: expected a list (lines starting with '- ')",
        ),
        (
            "port: 587\n  security: starttls\nsignup:\n  enabled: maybe",
            "config.yaml:12: signup.enabled: expected true or false, got 'maybe'",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_named_with_what_is_expected(written: str, error: str) -> None:
    text = VALID.replace("port: 587", written)
    if "\nnewsletter:" in written or "\nfeeds:" in written:  # the later key replaces the first
        text = text.replace("newsletter:\n", "old_newsletter:\n", 1)
        text = text.replace("feeds:\n", "old_feeds:\n", 1)
    assert error in error_for(text)


def test_numbers_written_as_text_or_with_a_point_are_read_as_before() -> None:
    text = VALID.replace("port: 587", "port: ' 587.0 '\n  timeout: ' 2.5 '\n  retries: 4.0")
    text = text.replace("  title:", "  choosable_sections: 1\n  title:")
    config = parse_config(text, "config.yaml", Path("/srv/news"), {})
    assert (config.smtp.port, config.smtp.timeout, config.smtp.retries) == (587, 2.5, 4)
    assert config.newsletter.choosable_sections is True


TITLE = "  title: Collaborate Weekly"
PORT = "  port: 587"


@pytest.mark.parametrize(
    ("after", "added", "error"),
    [
        (
            TITLE,
            "  logo_url: ftp://example.org/logo.png",
            "config.yaml:3: newsletter.logo_url: expected an http(s) URL,"
            " got 'ftp://example.org/logo.png'",
        ),
        (
            "",
            "theme:\n  accent: blue",
            "config.yaml:11: theme.accent: expected a six-digit hex colour like '#1d4f91',"
            " got 'blue'",
        ),
        (
            PORT,
            '  return_path: "b+{token}+{token}@example.org"',
            "config.yaml:10: smtp.return_path: {token} may appear once, in the part before the @",
        ),
        (
            PORT,
            '  return_path: "' + "b" * 60 + '+{token}@example.org"',
            "config.yaml:10: smtp.return_path: the part before the @ is too long for a token"
            " (64 characters)",
        ),
        (
            "",
            'schedule:\n  day: someday\n  time: "08:00"',
            "config.yaml:11: schedule.day: expected a weekday name such as 'monday', got 'someday'",
        ),
        (
            "",
            'schedule:\n  day: monday\n  time: "8 o\'clock"',
            'config.yaml:12: schedule.time: expected a time like "08:00", got "8 o\'clock"',
        ),
        (
            "",
            'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Mars/Olympus',
            "config.yaml:13: schedule.timezone: expected an IANA time zone such as"
            " 'Europe/London', got 'Mars/Olympus'",
        ),
        (
            "",
            'schedule:\n  day: monday\n  time: "08:00"\n  cron: "0 8 * * 1"',
            "config.yaml:10: schedule: give either cron or day + time, not both",
        ),
        (
            "",
            "schedule:\n  day: monday",
            'config.yaml:10: schedule: give day and time (e.g. day: monday, time: "08:00") or cron',
        ),
        (
            "",
            'schedule:\n  cron: "0 8 * * 1"\n  grace: soon',
            "config.yaml:12: schedule.grace: expected a duration like '6h', '30m' or '1d',"
            " got 'soon'",
        ),
        (
            "",
            'schedule:\n  cron: "0 8 * * 1"\n  approval:\n    required: true',
            "config.yaml:12: schedule.approval: approval.required needs at least one address"
            " in approvers",
        ),
        (
            "",
            "archive:\n  enabled: true\n  subscribe_url: ftp://x",
            "config.yaml:12: archive.subscribe_url: expected an http(s) or mailto: URL,"
            " got 'ftp://x'",
        ),
        (
            "",
            'workbench:\n  hosts: ["not a host!"]',
            "config.yaml:11: workbench.hosts: expected a DNS name such as example.org (ASCII"
            " letters, digits, hyphens and dots), got 'not a host!'",
        ),
    ],
)
def test_a_value_a_setting_cannot_use_is_named_with_an_example_of_one_it_can(
    after: str, added: str, error: str
) -> None:
    text = VALID.replace(after, f"{after}\n{added}") if after else f"{VALID}{added}\n"
    assert error_for(text) == error


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://digest:s3cret@db:five/digest", "is not a PostgreSQL URL"),
        ("postgresql://digest:s3cret@db:5432/", "names no database"),
    ],
)
def test_a_state_url_that_cannot_be_used_is_named_without_its_password(url: str, why: str) -> None:
    message = error_for(f"{VALID}state: {url}\n")
    assert message.startswith("config.yaml:10: state: 'postgresql://digest:***@db:")
    assert why in message and "expected postgresql://user@host:port/database" in message
    assert "s3cret" not in message


def test_a_url_that_cannot_be_read_is_masked_whole() -> None:
    assert redact_url("http://[::1/feed?key=s3cret") == "***"
    assert DatabaseURL("postgresql://digest:s3cret@[::1/db").password == ""
    assert DatabaseURL("postgresql://digest:s3cret@[::1/db").database == ""
