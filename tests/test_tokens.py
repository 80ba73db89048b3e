"""Unsubscribe tokens, and the secret a test send or dry run signs them with."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from digest.tokens import make_token, verify_token
from tests.conftest import Project
from tests.support import statefile

SECRET = "a-secret-of-thirty-two-bytes-or-more-0123"


def test_a_token_names_its_address_lower_cased() -> None:
    token = make_token(SECRET, "Ann.Lee@Example.COM")
    assert verify_token(SECRET, token) == "ann.lee@example.com"
    assert token == make_token(SECRET, "ann.lee@example.com")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


def test_a_token_from_another_secret_is_refused() -> None:
    assert verify_token("another secret", make_token(SECRET, "ann@example.com")) is None


def test_a_tampered_token_is_refused() -> None:
    token = make_token(SECRET, "ann@example.com")
    encoded, signature = token.split(".")
    forged = make_token(SECRET, "bob@example.com").split(".")[0]
    assert verify_token(SECRET, f"{forged}.{signature}") is None
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert verify_token(SECRET, f"{encoded}.{flipped}") is None
    assert verify_token(SECRET, f"{encoded}.{signature[:-2]}") is None


@pytest.mark.parametrize(
    "token", ["", ".", "abc", "abc.", ".abc", "!!!.???", "YW5u.%%%", "x" * 2000 + ".y", "\u00e9.e"]
)
def test_a_malformed_token_is_refused_without_an_error(token: str) -> None:
    assert verify_token(SECRET, token) is None


def configured_without_secret(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8").replace("secret: test-secret\n", "")
    project.config.write_text(text, encoding="utf-8")


def run_without_secret_variable(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DIGEST_SECRET"}
    environment["DIGEST_NOW"] = project.now.isoformat()
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project.config), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def kept_secret(project: Project) -> str:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return str(db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()[0])


def token_in(data: bytes) -> str:
    found = re.search(rb"unsubscribe\?token=([A-Za-z0-9_.-]+)", data)
    assert found, data[:500]
    return found.group(1).decode()


def test_a_first_test_send_signs_with_the_secret_real_sends_will_use(project: Project) -> None:
    configured_without_secret(project)
    result = run_without_secret_variable(project, "send", "--to", "zoe@example.com")
    assert result.returncode == 0, result.stderr
    secret = kept_secret(project)
    assert verify_token(secret, token_in(project.smtp.received[0].data)) == "zoe@example.com"
    assert (project.root / "state.sqlite3").stat().st_mode & 0o077 == 0
    with statefile.connect(project.root / "state.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM issues").fetchone() == (0,)  # nothing recorded

    assert run_without_secret_variable(project, "send").returncode == 0
    assert kept_secret(project) == secret
    ann = project.smtp.to("ann@example.com")[0]
    assert verify_token(secret, token_in(ann.data)) == "ann@example.com"


def test_a_first_dry_run_signs_with_the_kept_secret(project: Project) -> None:
    configured_without_secret(project)
    result = run_without_secret_variable(project, "send", "--dry-run")
    assert result.returncode == 0, result.stderr
    secret = kept_secret(project)
    files = sorted((project.root / "outbox").rglob("*.eml"))
    assert [verify_token(secret, token_in(path.read_bytes())) for path in files] == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert not project.smtp.received


def test_the_secret_variable_wins_and_nothing_is_kept(project: Project) -> None:
    configured_without_secret(project)
    environment = {**os.environ, "DIGEST_SECRET": SECRET, "DIGEST_NOW": project.now.isoformat()}
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project.config), "send", "--dry-run"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not (project.root / "state.sqlite3").exists()
    files = sorted((project.root / "outbox").rglob("*.eml"))
    assert verify_token(SECRET, token_in(files[0].read_bytes())) == "ann@example.com"
