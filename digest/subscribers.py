"""Read the editor's subscriber list (CSV or YAML), validating and de-duplicating addresses."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from digest.errors import ConfigError
from digest.models import Subscriber, SubscriberList

logger = logging.getLogger(__name__)


def _rows(path: Path, text: str) -> Iterable[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or []
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: YAML syntax error: {error}") from None
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a YAML list of entries with email: and name:")
        for index, item in enumerate(data, start=1):
            yield index, item if isinstance(item, dict) else {"email": item}
        return
    reader = csv.DictReader(io.StringIO(text))
    fields = [name.strip().lower() for name in reader.fieldnames or []]
    if "email" not in fields:
        raise ConfigError(f"{path}:1: the header must name an 'email' column (e.g. email,name)")
    for row in reader:
        cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k}
        yield reader.line_num, cleaned


def parse_subscribers(path: Path, text: str) -> SubscriberList:
    """Check every row: invalid ones are reported with their line and skipped; duplicates merged."""
    from email_validator import EmailNotValidError, validate_email

    subscribers: list[Subscriber] = []
    invalid: list[str] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    for line, row in _rows(path, text):
        raw = str(row.get("email") or "").strip()
        if not raw:
            invalid.append(f"{path.name}:{line}: no email address")
            continue
        try:
            address = validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError as error:
            invalid.append(f"{path.name}:{line}: {raw!r}: {error}")
            continue
        if address.lower() in seen:
            duplicates.append(f"{path.name}:{line}: {address}")
            continue
        seen.add(address.lower())
        subscribers.append(Subscriber(email=address, name=str(row.get("name") or "").strip()))
    for problem in invalid:
        logger.info("skipping subscriber %s", problem)
    return SubscriberList(tuple(subscribers), tuple(invalid), tuple(duplicates))


def load_subscribers(path: Path) -> SubscriberList:
    """Read the subscriber file named in config.yaml."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: subscribers file not found; create it (a CSV with header email,name) "
            "or fix `subscribers:` in config.yaml"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the subscribers file: {error}") from None
    return parse_subscribers(path, text)
