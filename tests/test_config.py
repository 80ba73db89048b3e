"""Config mistakes: each names file, line and key, says what is valid, and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import load_config, parse_config
from digest.errors import ConfigError
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
