"""Unsubscribe tokens, and the secret a test send or dry run signs them with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from digest.core.tokens import (
    TokenCheck,
    check_purpose_token,
    make_purpose_token,
    make_token,
    verify_token,
)
from tests.conftest import Project
from tests.support import statefile
from tests.support.encodings import encodings_of

SECRET = "a-secret-of-thirty-two-bytes-or-more-0123"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)  # 1893456000

# Tokens that earlier releases put in mail, made with SECRET by that code: they carry the address
# readably, and every one already sent must keep working.
READABLE_UNSUBSCRIBE = {
    "YW5uQGV4YW1wbGUuY29t.i9aiP0p5FgZMZlXS0s9bOQ": "ann@example.com",
    "YW5uLmxlZUBleGFtcGxlLmNvbQ.lShnPFY6JYhU9kD9Q-7_ng": "ann.lee@example.com",
    "em_Dq0Biw7xjaGVyLmV4YW1wbGU.1q5miAoHM-5Z1BpVll0YtQ": "zo\u00eb@b\u00fccher.example",
    "YW5uK25ld3NAeG4tLWJjaGVyLWt2YS5leGFtcGxl.Ev-b-wPF0kQ-g4qcgXw8jg": (
        "ann+news@xn--bcher-kva.example"
    ),
}
READABLE_PURPOSE = {
    ("confirm", "p1.YW5uQGV4YW1wbGUuY29t.1893456000.02hi1OVVkik29LVLO1K7GA"): "ann@example.com",
    ("preferences", "p1.YW5uQGV4YW1wbGUuY29t.1893456000.xN2wcId41NFTGtlOc4pwiw"): (
        "ann@example.com"
    ),
    ("preferences", "p1.em_Dq0Biw7xjaGVyLmV4YW1wbGU.1893456000.JrVijsq0cwD07Md5ctoLIA"): (
        "zo\u00eb@b\u00fccher.example"
    ),
    ("approval", "p1.MjAyNi0xMi0wMXQwODowMA.1893456000.jA5u0at_Kgdg9vpZSAugYg"): (
        "2026-12-01t08:00"
    ),
}


# Tokens this release makes with SECRET: sealed, so they say nothing readable, and deterministic,
# so a change that would break every link already sent shows here first.
SEALED_UNSUBSCRIBE = {
    "u2.XbFznz3lh8OMphy1X0NoCtWgW3DUrHUl_HuZBnwvuQ": "ann@example.com",
    "u2.MloKRvBsjiIBxr9yogPeBsvyWhBxnvDGl_XBy7CjlfM-FugcOiaHIt3t": "zo\u00eb@xn--bcher-kva.example",
}
SEALED_PURPOSE = {
    ("confirm", "p2.crtaHuzfSV-TZ-mUC4qFD5W1-CuKUsk2Gp43KjgzHQMpw1b2aUqV"): "ann@example.com",
    ("preferences", "p2.e-mYMkS1i2O1WmeRIS8-Sz0POdNwt9V8onH-1eIXvaVOUiWYPVf0"): "ann@example.com",
}


@pytest.mark.parametrize(("token", "address"), SEALED_UNSUBSCRIBE.items())
def test_sealed_unsubscribe_tokens_are_made_and_read_the_same_way(token: str, address: str) -> None:
    assert make_token(SECRET, address) == token
    assert verify_token(SECRET, token) == address


@pytest.mark.parametrize(("made", "address"), SEALED_PURPOSE.items())
def test_sealed_purpose_tokens_are_made_and_read_the_same_way(
    made: tuple[str, str], address: str
) -> None:
    purpose, token = made
    assert make_purpose_token(SECRET, purpose, address, EXPIRY) == token
    assert check_purpose_token(SECRET, purpose, token, NOW).address == address
    assert check_purpose_token(SECRET, purpose, token, EXPIRY).problem == "expired"


def test_a_token_names_its_address_lower_cased() -> None:
    token = make_token(SECRET, "Ann.Lee@Example.COM")
    assert verify_token(SECRET, token) == "ann.lee@example.com"
    assert token == make_token(SECRET, "ann.lee@example.com")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)


@pytest.mark.parametrize(("token", "address"), READABLE_UNSUBSCRIBE.items())
def test_unsubscribe_tokens_already_sent_keep_working(token: str, address: str) -> None:
    assert verify_token(SECRET, token) == address
    assert verify_token("another secret", token) is None
    assert verify_token(SECRET, token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None


@pytest.mark.parametrize(("made", "address"), READABLE_PURPOSE.items())
def test_purpose_tokens_already_sent_keep_working_until_they_expire(
    made: tuple[str, str], address: str
) -> None:
    purpose, token = made
    assert check_purpose_token(SECRET, purpose, token, NOW).address == address
    other = "preferences" if purpose != "preferences" else "confirm"
    assert check_purpose_token(SECRET, other, token, NOW).problem == "invalid"
    assert check_purpose_token(SECRET, purpose, token, EXPIRY).problem == "expired"
    assert verify_token(SECRET, token) is None


@pytest.mark.parametrize(
    "address", ["ann@example.com", "zo\u00eb@b\u00fccher.example", "ann+news@example.org"]
)
def test_new_tokens_carry_no_readable_address(address: str) -> None:
    tokens = [
        make_token(SECRET, address),
        make_purpose_token(SECRET, "confirm", address, EXPIRY),
        make_purpose_token(SECRET, "preferences", address, EXPIRY),
    ]
    for token in tokens:
        lowered = token.lower()
        for encoded in encodings_of(address):
            assert encoded.lower() not in lowered, (token, encoded)
        assert re.fullmatch(r"[up]2\.[A-Za-z0-9_-]+", token)
    assert verify_token(SECRET, tokens[0]) == address
    assert check_purpose_token(SECRET, "confirm", tokens[1], NOW).address == address
    assert check_purpose_token(SECRET, "preferences", tokens[2], NOW).address == address
    # Each is good for its own purpose only.
    assert verify_token(SECRET, tokens[1]) is None and verify_token(SECRET, tokens[2]) is None
    assert check_purpose_token(SECRET, "confirm", tokens[0], NOW).problem == "invalid"
    assert check_purpose_token(SECRET, "preferences", tokens[1], NOW).problem == "invalid"


def test_the_same_address_gets_the_same_unsubscribe_token() -> None:
    # A List-Unsubscribe link is the same from issue to issue, and a resumed send rebuilds it.
    assert make_token(SECRET, "ann@example.com") == make_token(SECRET, "Ann@Example.com")
    assert make_token(SECRET, "ann@example.com") != make_token(SECRET, "bob@example.com")
    assert make_token("another secret", "ann@example.com") != make_token(SECRET, "ann@example.com")


@pytest.mark.parametrize("position", [3, 10, 20, -1])
def test_a_changed_character_anywhere_is_refused(position: int) -> None:
    def changed(token: str) -> str:
        swapped = "B" if token[position] != "B" else "C"
        return (
            token[:position] + swapped + token[position + 1 :]
            if position != -1
            else (token[:-1] + swapped)
        )

    unsubscribe = make_token(SECRET, "ann@example.com")
    purpose = make_purpose_token(SECRET, "confirm", "ann@example.com", EXPIRY)
    assert verify_token(SECRET, changed(unsubscribe)) is None
    assert check_purpose_token(SECRET, "confirm", changed(purpose), NOW).problem == "invalid"
    assert check_purpose_token(SECRET, "confirm", purpose + "=", NOW).problem == "invalid"
    assert check_purpose_token(SECRET, "confirm", purpose + "A", NOW).problem == "invalid"


def test_new_purpose_tokens_expire() -> None:
    token = make_purpose_token(SECRET, "confirm", "ann@example.com", NOW + timedelta(days=7))
    good = check_purpose_token(SECRET, "confirm", token, NOW + timedelta(days=6))
    assert good.address == "ann@example.com"
    late = check_purpose_token(SECRET, "confirm", token, NOW + timedelta(days=7))
    assert (late.address, late.problem) == (None, "expired")


def test_a_token_from_another_secret_is_refused() -> None:
    assert verify_token("another secret", make_token(SECRET, "ann@example.com")) is None


def test_a_tampered_readable_token_is_refused() -> None:
    token = "YW5uQGV4YW1wbGUuY29t.i9aiP0p5FgZMZlXS0s9bOQ"  # ann@example.com, by 0.1.0
    encoded, signature = token.split(".")
    forged = "Ym9iQGV4YW1wbGUuY29t"  # bob@example.com
    assert verify_token(SECRET, f"{forged}.{signature}") is None
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert verify_token(SECRET, f"{encoded}.{flipped}") is None
    assert verify_token(SECRET, f"{encoded}.{signature[:-2]}") is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "abc.",
        ".abc",
        "!!!.???",
        "YW5u.%%%",
        "x" * 2000 + ".y",
        "\u00e9.e",
        "u2.",
        "u2.AAAA",
        "u2." + "A" * 40,
        "u2.%%%",
        "u2.\u00e9\u00e9\u00e9\u00e9",
        "u2." + "A" * 2000,
        "p2." + "A" * 40,
    ],
)
def test_a_malformed_token_is_refused_without_an_error(token: str) -> None:
    assert verify_token(SECRET, token) is None


# Tokens of the formats this release reads, made here from their description (the module's
# docstring), not by the code under test: the earlier readable forms, HMAC-SHA256 truncated to 16
# bytes, and the sealed form with any payload, so the limits can be reached exactly.
INVALID = TokenCheck(None, "invalid")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def readable_unsubscribe(address: str, *, padded: bool = False) -> str:
    mac = hmac.new(SECRET.encode(), address.lower().encode(), hashlib.sha256).digest()[:16]
    signature = _b64(mac) + ("==" if padded else "")
    return f"{_b64(address.encode())}.{signature}"


def readable_purpose(purpose: str, address: str, seconds: str, prefix: str = "p1") -> str:
    message = f"digest-token\0{purpose}\0{address.lower()}\0{int(seconds)}".encode()
    mac = hmac.new(SECRET.encode(), message, hashlib.sha256).digest()[:16]
    return f"{prefix}.{_b64(address.encode())}.{seconds}.{_b64(mac)}"


def sealed_purpose(purpose: str, payload: bytes) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    version = b"digest link token 2"
    key = HKDF(hashes.SHA256(), 64, salt=version, info=b"link tokens").derive(SECRET.encode())
    return "p2." + _b64(AESSIV(key).encrypt(payload, [version, purpose.encode()]))


def test_the_helpers_make_the_tokens_this_release_reads() -> None:
    assert readable_unsubscribe("ann@example.com") in READABLE_UNSUBSCRIBE
    assert ("confirm", readable_purpose("confirm", "ann@example.com", "1893456000")) in (
        READABLE_PURPOSE
    )
    payload = (1893456000).to_bytes(8, "big") + b"ann@example.com"
    assert ("confirm", sealed_purpose("confirm", payload)) in SEALED_PURPOSE


def test_a_token_of_1024_characters_is_read_and_a_longer_one_refused() -> None:
    # 1024 is the limit; genuine tokens on either side of it show it is neither 1023 nor 1025.
    unsubscribe = readable_unsubscribe("a" * 749, padded=True)
    assert len(unsubscribe) == 1024
    assert verify_token(SECRET, unsubscribe) == "a" * 749
    purpose = readable_purpose("confirm", "a" * 740, "1893456000")
    assert len(purpose) == 1024
    assert check_purpose_token(SECRET, "confirm", purpose, NOW).address == "a" * 740
    sealed_unsubscribe = make_token(SECRET, "a" * 750)
    sealed = make_purpose_token(SECRET, "confirm", "a" * 742, EXPIRY)
    assert len(sealed_unsubscribe) == len(sealed) == 1025
    assert verify_token(SECRET, sealed_unsubscribe) is None
    assert check_purpose_token(SECRET, "confirm", sealed, NOW) == INVALID


def test_an_expiry_past_the_year_9999_is_checked_without_an_error() -> None:
    # Late on 31 December 9999 west of UTC is already 10000 in UTC, past what datetime holds.
    late = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    token = make_purpose_token(SECRET, "confirm", "ann@example.com", late)
    assert check_purpose_token(SECRET, "confirm", token, NOW).address == "ann@example.com"
    readable = readable_purpose("confirm", "ann@example.com", "9" * 12)
    assert check_purpose_token(SECRET, "confirm", readable, NOW).address == "ann@example.com"


def test_expiry_digits_past_the_limits_are_refused() -> None:
    twelve = readable_purpose("confirm", "ann@example.com", "1" + "0" * 11)
    assert check_purpose_token(SECRET, "confirm", twelve, NOW).address == "ann@example.com"
    thirteen = readable_purpose("confirm", "ann@example.com", "1" + "0" * 12)
    assert check_purpose_token(SECRET, "confirm", thirteen, NOW) == INVALID
    address = b"ann@example.com"
    at_limit = sealed_purpose("confirm", (10**12).to_bytes(8, "big") + address)
    assert check_purpose_token(SECRET, "confirm", at_limit, NOW).address == "ann@example.com"
    past = sealed_purpose("confirm", (10**12 + 1).to_bytes(8, "big") + address)
    assert check_purpose_token(SECRET, "confirm", past, NOW) == INVALID
    little_endian = sealed_purpose("confirm", (1893456000).to_bytes(8, "little") + address)
    assert check_purpose_token(SECRET, "confirm", little_endian, NOW) == INVALID
    no_address = sealed_purpose("confirm", (1893456000).to_bytes(8, "big"))
    assert check_purpose_token(SECRET, "confirm", no_address, NOW) == INVALID


@pytest.mark.parametrize("seconds", ["", "12a", "-1", "+1", "1e9", "\u0661\u0662"])
def test_a_readable_purpose_token_with_a_bad_expiry_is_invalid(seconds: str) -> None:
    mac = _b64(b"0" * 16)
    token = f"p1.{_b64(b'ann@example.com')}.{seconds}.{mac}"
    assert check_purpose_token(SECRET, "confirm", token, NOW) == INVALID


def test_a_readable_purpose_token_is_read_only_whole_and_signed() -> None:
    good = readable_purpose("confirm", "ann@example.com", "1893456000")
    assert check_purpose_token(SECRET, "confirm", good, NOW).address == "ann@example.com"
    other_prefix = readable_purpose("confirm", "ann@example.com", "1893456000", prefix="p9")
    assert check_purpose_token(SECRET, "confirm", other_prefix, NOW) == INVALID
    assert check_purpose_token(SECRET, "confirm", good + ".x", NOW) == INVALID
    assert check_purpose_token(SECRET, "confirm", good[:-2] + "AA", NOW) == INVALID
    assert check_purpose_token(SECRET, "preferences", good, NOW) == INVALID
    _, encoded, seconds, signature = good.split(".")
    for bad in ("A", _b64(b"\xff\xfe")):  # not base64; not UTF-8
        token = f"p1.{bad}.{seconds}.{signature}"
        assert check_purpose_token(SECRET, "confirm", token, NOW) == INVALID
    assert check_purpose_token(SECRET, "confirm", f"p1.{encoded}.{seconds}.A", NOW) == INVALID


def test_a_readable_unsubscribe_token_is_read_only_whole() -> None:
    good = readable_unsubscribe("ann@example.com", padded=True)
    assert verify_token(SECRET, good) == "ann@example.com"
    encoded, signature = good.split(".")
    # Base64 decoding skips a stray dot, so only the check for one keeps these out.
    assert verify_token(SECRET, f"{encoded[:4]}.{encoded[4:]}.{signature}") is None
    assert verify_token(SECRET, f"{encoded}.{signature[:4]}.{signature[4:]}") is None
    # A signature over the empty address does not make an empty token part acceptable.
    assert verify_token(SECRET, readable_unsubscribe("")) is None


def test_an_expiry_before_1970_counts_as_1970() -> None:
    token = make_purpose_token(
        SECRET, "confirm", "ann@example.com", datetime(1960, 1, 1, tzinfo=UTC)
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert token == make_purpose_token(SECRET, "confirm", "ann@example.com", epoch)
    assert check_purpose_token(SECRET, "confirm", token, epoch).problem == "expired"


def test_a_naive_expiry_is_refused_when_making_a_token() -> None:
    with pytest.raises(ValueError, match=r"^a token's expiry must be timezone-aware$"):
        make_purpose_token(SECRET, "confirm", "ann@example.com", datetime(2030, 1, 1))


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


# ---------------------------------------------------------------- tokens naming their issue


def test_a_token_names_its_issue_and_a_token_without_one_names_none() -> None:
    from digest.core.tokens import UnsubscribeLink, read_token

    assert read_token(SECRET, make_token(SECRET, "Ann@Example.com", 7)) == UnsubscribeLink(
        "ann@example.com", 7
    )
    assert read_token(SECRET, make_token(SECRET, "ann@example.com")) == UnsubscribeLink(
        "ann@example.com", None
    )
    made = make_purpose_token(SECRET, "preferences", "ann@example.com", EXPIRY, 4_000_000_000)
    assert check_purpose_token(SECRET, "preferences", made, NOW) == TokenCheck(
        "ann@example.com", issue=4_000_000_000
    )
    assert check_purpose_token(
        SECRET, "preferences", make_purpose_token(SECRET, "preferences", "a@b.org", EXPIRY), NOW
    ) == TokenCheck("a@b.org")


def test_one_form_cannot_be_read_as_the_other() -> None:
    """A `u2` token relabelled `u3` (or back) is refused, not read with its first bytes taken
    for an issue number; likewise `p2` and `p3`."""
    from digest.core.tokens import read_token

    plain = make_token(SECRET, "ann@example.com")
    named = make_token(SECRET, "ann@example.com", 3)
    assert read_token(SECRET, "u3." + plain.partition(".")[2]) is None
    assert read_token(SECRET, "u2." + named.partition(".")[2]) is None
    purpose = make_purpose_token(SECRET, "preferences", "ann@example.com", EXPIRY)
    issue = make_purpose_token(SECRET, "preferences", "ann@example.com", EXPIRY, 3)
    for token in ("p3." + purpose.partition(".")[2], "p2." + issue.partition(".")[2]):
        assert check_purpose_token(SECRET, "preferences", token, NOW).problem == "invalid"
    assert read_token("another-secret-of-thirty-two-bytes-0123", named) is None


@pytest.mark.parametrize("issue", [0, -1, 2**32])
def test_an_issue_number_out_of_range_is_refused_when_making_a_token(issue: int) -> None:
    with pytest.raises(ValueError, match="an issue number must be from 1 to"):
        make_token(SECRET, "ann@example.com", issue)
    with pytest.raises(ValueError, match="an issue number must be from 1 to"):
        make_purpose_token(SECRET, "preferences", "ann@example.com", EXPIRY, issue)
