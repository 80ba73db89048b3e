"""How digest logs: free text for a person or one JSON object a line for a machine, and readers'
addresses masked (`a***@example.org`) before any record is written.

Logs travel further than the state: into the journal, a log shipper, a support ticket. An
address in them is personal data kept where no erasure reaches it, so every record is masked by
a filter on the handler (`--log-addresses` turns it off, to debug one delivery). A log call adds
the issue, slot or event it is about as `extra={"issue": 12, "slot": "...", "event": "..."}`:
the JSON lines carry them as fields, for a machine to select on.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("text", "json")
FORMAT_VARIABLE = "DIGEST_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields a log call may pass as `extra`, copied into each JSON line when present.
CONTEXT_FIELDS = ("event", "slot", "issue")
HANDLER_NAME = "digest"

# Something@domain.tld as it appears in running text: a local part of the characters RFC 5322
# allows unquoted (any letter, for SMTPUTF8), a domain of two or more labels. The first
# character of the local part is kept, so an operator can tell two readers apart in one send.
ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])([\w!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]*"
    r"@((?:[\w](?:[\w-]*[\w])?\.)+[\w](?:[\w-]*[\w])?)"
)


def mask_addresses(text: str) -> str:
    """`text` with every email address in it shown as its first character, *** and its domain."""
    if "@" not in text:
        return text
    return ADDRESS.sub(r"\1***@\2", text)


class MaskAddresses(logging.Filter):
    """Mask addresses in a record's message, its context fields and its traceback, in place, so
    whatever formats the record afterwards sees only the masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_addresses(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, mask_addresses(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_addresses(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_addresses(record.stack_info)
        return True


class JsonLines(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, the context fields
    the call passed, and the traceback as one string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


def configure(
    *,
    verbose: bool,
    log_format: str = "text",
    show_addresses: bool = False,
    stream: TextIO | None = None,
) -> logging.Handler | None:
    """Send every record to standard error (or `stream`) in `log_format`, addresses masked
    unless `show_addresses`; INFO and up when `verbose`, else WARNING.

    Like logging.basicConfig, it leaves alone a process whose logging something else has set up
    (a test harness, a program embedding digest) and returns None; a handler of its own from an
    earlier call is replaced, so no line is written twice."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    if any(old.get_name() != HANDLER_NAME for old in root.handlers):
        return None
    for old in root.handlers[:]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(HANDLER_NAME)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    if not show_addresses:
        handler.addFilter(MaskAddresses())
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler
