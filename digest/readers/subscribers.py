"""Read the editor's subscriber list (CSV or YAML), validating and de-duplicating addresses.

A file that cannot be a subscriber list (not UTF-8, a NUL byte, a CSV without an `email`
column, a field too long for a CSV, YAML that is not a list of entries) is a ConfigError
naming file and line: nothing is sent from a list that may be the wrong file. A single row
with a bad address is skipped and reported, so one typo does not stop an issue.

Every address is kept in digest's canonical form (digest.core.addresses): lower-cased, its domain
as an IDNA A-label. `Erin@Bücher.example` and `erin@xn--bcher-kva.example` are one person: the
second row is a duplicate, and an unsubscribe, suppression or erasure given in either form
matches. Only a non-ASCII local part needs SMTPUTF8. Control characters in names are replaced
by spaces, since a name goes into the To header.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from digest.config.yamlfile import load_yaml
from digest.core.addresses import MAX_ADDRESS_LENGTH, AddressError, canonical_address
from digest.core.errors import ConfigError
from digest.core.models import Subscriber, SubscriberList

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHOWN_HEADER = 60
# A local part email-validator takes as written: ASCII atoms joined by single dots, at most 64.
_SIMPLE_LOCAL = re.compile(
    r"(?=.{1,64}\Z)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z"
)


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


def _csv_rows(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    first: list[str] = []

    def remembered() -> Iterator[str]:
        for line in lines:
            if not first:
                first.append(line)
            yield line

    reader = csv.DictReader(remembered())
    try:
        fields = [name.strip().lower() for name in reader.fieldnames or []]
        if "email" not in fields:
            header = (first[0] if first else "").split("\n", 1)[0].strip()
            shown = header[:_SHOWN_HEADER] + ("..." if len(header) > _SHOWN_HEADER else "")
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
    return _csv_rows(path, io.StringIO(text, newline=""))


def _clean_name(name: str) -> str:
    return " ".join(_CONTROL.sub(" ", name).split())


class AddressChecker:
    """Each address in its canonical form, checking each distinct domain only once.

    A list of thousands shares a few domains, and checking a domain is most of the work. An
    ASCII address whose local part is a plain dot-atom (RFC 5322) is its local part lower-cased
    plus its domain's canonical form; anything else, or a refused domain, goes to
    `canonical_address` whole, so the result and the error are always its own.
    """

    def __init__(self) -> None:
        self.domains: dict[str, str | None] = {}  # domain as written -> canonical, None: refused

    def check(self, raw: str) -> str:
        """The address in its canonical form; AddressError (saying why) if it is not one."""
        local, _, domain = raw.rpartition("@")
        if raw.isascii() and len(raw) <= MAX_ADDRESS_LENGTH and _SIMPLE_LOCAL.match(local):
            if domain not in self.domains:
                self.domains[domain] = self._domain(domain)
            canonical_domain = self.domains[domain]
            if canonical_domain is not None:
                address = f"{local.lower()}@{canonical_domain}"
                if len(address) <= MAX_ADDRESS_LENGTH:
                    return address
        return canonical_address(raw)

    @staticmethod
    def _domain(domain: str) -> str | None:
        try:
            return canonical_address(f"a@{domain}").split("@", 1)[1]
        except AddressError:
            return None


def parse_subscribers(path: Path, text: str) -> SubscriberList:
    """Check every row: invalid ones are reported with their line and skipped; duplicates merged."""
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
            address = checker.check(raw)
        except AddressError as error:
            invalid.append(f"{path.name}:{line}: {raw!r}: {error}")
            continue
        if address in seen:
            duplicates.append(f"{path.name}:{line}: {address}")
            continue
        seen.add(address)
        subscribers.append(Subscriber(email=address, name=_clean_name(str(row.get("name") or ""))))
    for problem in invalid:
        logger.info("skipping subscriber %s", problem)
    return SubscriberList(tuple(subscribers), tuple(invalid), tuple(duplicates))


def _not_found(path: Path) -> ConfigError:
    return ConfigError(
        f"{path}: subscribers file not found; create it (a CSV with header email,name) "
        "or fix `subscribers:` in config.yaml"
    )


def _not_utf8(path: Path, line: int, byte: int) -> ConfigError:
    return ConfigError(
        f"{path}:{line}: not UTF-8 text (byte 0x{byte:02x}); save the subscriber list as UTF-8"
    )


def load_subscribers(path: Path) -> SubscriberList:
    """Read the subscriber file named in config.yaml."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _not_found(path) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the subscribers file: {error.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise _not_utf8(path, line, raw[error.start]) from None
    return parse_subscribers(path, text)


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _lines(path: Path) -> Iterator[str]:
    """The file's lines as text, one at a time, with the checks load_subscribers makes of the
    whole: UTF-8 (a BOM dropped) and no NUL byte, each refused naming its line."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise _not_found(path) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the subscribers file: {error.strerror}") from None
    with file:
        for number, raw in enumerate(file, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise _not_utf8(path, number, raw[error.start]) from None
            if "\x00" in line:
                raise ConfigError(
                    f"{path}:{number}: contains a NUL byte: this looks like a binary file, not"
                    " a subscriber list"
                )
            yield line


def check_subscriber_file(path: Path) -> None:
    """Read the whole file as a send will, keeping nothing: ConfigError (naming the line) if
    it cannot be a subscriber list, so nothing is frozen from the wrong file. Rows with a bad
    address are not errors here: the send skips and reports them."""
    if _is_yaml(path):
        load_subscribers(path)
        return
    for _ in _csv_rows(path, _lines(path)):
        pass


def stream_subscribers(path: Path, invalid: list[str]) -> Iterator[Subscriber]:
    """Each valid entry of the subscriber file in file order, a CSV read a line at a time (a
    YAML list is read whole), so a long list is never held in memory. A row with a bad address
    is skipped and described in `invalid`; duplicates are left for the caller to merge (the
    send queue keeps the first). ConfigError as load_subscribers."""
    if _is_yaml(path):
        listed = load_subscribers(path)
        invalid.extend(listed.invalid)
        yield from listed.subscribers
        return
    checker = AddressChecker()
    for line, row in _csv_rows(path, _lines(path)):
        raw = str(row.get("email") or "").strip()
        if not raw:
            invalid.append(f"{path.name}:{line}: no email address")
            continue
        try:
            address = checker.check(raw)
        except AddressError as error:
            invalid.append(f"{path.name}:{line}: {raw!r}: {error}")
            continue
        yield Subscriber(email=address, name=_clean_name(str(row.get("name") or "")))
