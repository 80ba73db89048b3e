"""Read the editor's subscriber list (CSV or YAML), validating and de-duplicating addresses.

A file that cannot be a subscriber list (not UTF-8, a NUL byte, a CSV without an `email`
column, a field too long for a CSV, YAML that is not a list of entries) is a ConfigError
naming file and line: nothing is sent from a list that may be the wrong file. A single row
with a bad address is skipped and reported, so one typo does not stop an issue.

An all-ASCII address is kept in its ASCII form, including a punycode domain
(`user@xn--bcher-kva.example`), so it never needs SMTPUTF8; email-validator would otherwise
turn the domain into Unicode. Control characters in names are replaced by spaces, since a
name goes into the To header.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from digest.errors import ConfigError
from digest.models import Subscriber, SubscriberList
from digest.yamlfile import load_yaml

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHOWN_HEADER = 60
# A local part email-validator takes as written: ASCII atoms joined by single dots, at most 64.
_SIMPLE_LOCAL = re.compile(
    r"(?=.{1,64}\Z)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)
_MAX_ADDRESS = 254


def _yaml_rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    document = load_yaml(text, str(path))
    data, root = document.data, document.root
    if data is None:
        return
    if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode):
        raise ConfigError(
            f"{path}:1: expected a YAML list of entries such as"
            " `- email: ann@example.org` with an optional `name:`"
        )
    for item, node in zip(data, root.value, strict=True):
        line = node.start_mark.line + 1
        if isinstance(item, str):
            item = {"email": item}
        if not isinstance(item, dict):
            raise ConfigError(
                f"{path}:{line}: expected an entry with email: (and name:), or an address"
            )
        for key in ("email", "name"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ConfigError(f"{path}:{line}: {key}: expected text; put it in quotes")
        yield line, item


def _csv_rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = [name.strip().lower() for name in reader.fieldnames or []]
        if "email" not in fields:
            first = text.split("\n", 1)[0].strip()
            shown = first[:_SHOWN_HEADER] + ("..." if len(first) > _SHOWN_HEADER else "")
            raise ConfigError(
                f"{path}:1: the first line must be a header naming an 'email' column"
                f" (e.g. email,name), got {shown!r}"
            )
        for row in reader:
            cleaned = {
                (k or "").strip().lower(): (v or "").strip() if isinstance(v, str) else ""
                for k, v in row.items()
                if k
            }
            yield reader.line_num, cleaned
    except csv.Error as error:
        line = reader.line_num + 1  # the line being read when it failed
        raise ConfigError(
            f"{path}:{line}: not a readable CSV row ({error}); is this the subscriber list?"
        ) from None


def _rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ConfigError(
            f"{path}:{line}: contains a NUL byte: this looks like a binary file, not a"
            " subscriber list"
        )
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_rows(path, text)
    return _csv_rows(path, text)


def _clean_name(name: str) -> str:
    return " ".join(_CONTROL.sub(" ", name).split())


class AddressChecker:
    """email-validator's verdict on each address, checking each distinct domain only once.

    A list of thousands shares a few domains, and checking a domain is most of the work. An
    ASCII address whose local part is a plain dot-atom (RFC 5322) is the local part as written
    plus its domain as email-validator normalises it; anything else, or a refused domain, goes
    to email-validator whole, so the result and the error are always its own.
    """

    def __init__(self) -> None:
        self.domains: dict[str, str | None] = {}  # domain as written -> ASCII form, None: refused

    def check(self, raw: str) -> tuple[str, str]:
        """(the address as kept, its identity for de-duplication); EmailNotValidError if bad."""
        local, _, domain = raw.rpartition("@")
        if raw.isascii() and len(raw) <= _MAX_ADDRESS and _SIMPLE_LOCAL.match(local):
            if domain not in self.domains:
                self.domains[domain] = self._domain(domain)
            ascii_domain = self.domains[domain]
            if ascii_domain is not None:
                address = f"{local}@{ascii_domain}"
                if len(address) <= _MAX_ADDRESS:
                    return address, f"{local.lower()}@{ascii_domain.lower()}"
        return _validate(raw)

    @staticmethod
    def _domain(domain: str) -> str | None:
        from email_validator import EmailNotValidError

        try:
            return _validate(f"a@{domain}")[0].split("@", 1)[1]
        except EmailNotValidError:
            return None


def _validate(raw: str) -> tuple[str, str]:
    """email-validator's verdict: the address as kept and its identity; or EmailNotValidError."""
    from email_validator import validate_email

    checked = validate_email(raw, check_deliverability=False)
    # The ASCII form for an ASCII address (see the module docstring); Unicode otherwise.
    address = checked.ascii_email if raw.isascii() and checked.ascii_email else checked.normalized
    return address, f"{checked.local_part.lower()}@{checked.ascii_domain.lower()}"


def parse_subscribers(path: Path, text: str) -> SubscriberList:
    """Check every row: invalid ones are reported with their line and skipped; duplicates merged."""
    from email_validator import EmailNotValidError

    subscribers: list[Subscriber] = []
    invalid: list[str] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    checker = AddressChecker()
    for line, row in _rows(path, text):
        raw = str(row.get("email") or "").strip()
        if not raw:
            invalid.append(f"{path.name}:{line}: no email address")
            continue
        try:
            address, identity = checker.check(raw)
        except EmailNotValidError as error:
            invalid.append(f"{path.name}:{line}: {raw!r}: {error}")
            continue
        if identity in seen:
            duplicates.append(f"{path.name}:{line}: {address}")
            continue
        seen.add(identity)
        subscribers.append(Subscriber(email=address, name=_clean_name(str(row.get("name") or ""))))
    for problem in invalid:
        logger.info("skipping subscriber %s", problem)
    return SubscriberList(tuple(subscribers), tuple(invalid), tuple(duplicates))


def load_subscribers(path: Path) -> SubscriberList:
    """Read the subscriber file named in config.yaml."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: subscribers file not found; create it (a CSV with header email,name) "
            "or fix `subscribers:` in config.yaml"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the subscribers file: {error.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the subscriber"
            " list as UTF-8"
        ) from None
    return parse_subscribers(path, text)
