"""Logs for machines and for privacy: `--log-format json` writes one JSON object a line, and
readers' addresses are masked unless `--log-addresses` is given."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime

import pytest

from digest.core.logs import JsonLines, MaskAddresses, mask_addresses
from tests.conftest import Project

DEFERRAL = "451 4.2.0 <ann@example.com>: mailbox busy, try again"
REFUSAL = "550 5.1.1 <bob@example.com>: no such user"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("ann@example.com", "a***@example.com"),
        ("to <Bob.Smith+news@Mail.Example.org>:", "to <B***@Mail.Example.org>:"),
        ("2 of them: x@a.io, y_z@b.co.uk", "2 of them: x***@a.io, y***@b.co.uk"),
        ("zoë@bücher.example", "z***@bücher.example"),
        ("ann@xn--bcher-kva.example", "a***@xn--bcher-kva.example"),
        ("no address here, just @mentions and a@b", "no address here, just @mentions and a@b"),
    ],
)
def test_addresses_are_masked_wherever_they_stand(text: str, masked: str) -> None:
    assert mask_addresses(text) == masked


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("digest.run.send", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    made.created = datetime.fromisoformat("2026-11-30T08:00:00.250+00:00").timestamp()
    return made


def test_a_json_line_holds_time_level_logger_message_and_context() -> None:
    line = JsonLines().format(
        record("issue %d: %d delivered", 12, 3, issue=12, slot="2026-11-30T08:00:00+00:00")
    )

    assert json.loads(line) == {
        "time": "2026-11-30T08:00:00.250Z",
        "level": "INFO",
        "logger": "digest.run.send",
        "message": "issue 12: 3 delivered",
        "issue": 12,
        "slot": "2026-11-30T08:00:00+00:00",
    }


def test_the_filter_masks_the_arguments_and_the_traceback() -> None:
    try:
        raise ValueError("refused ann@example.com")
    except ValueError:
        failed = record("%s failed", "bob@example.com", event="bob@example.com left")
        failed.exc_info = sys.exc_info()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    handler.addFilter(MaskAddresses())

    handler.handle(failed)

    written = stream.getvalue()
    assert "ann@example.com" not in written and "bob@example.com" not in written
    line = json.loads(written)
    assert line["message"] == "b***@example.com failed"
    assert line["event"] == "b***@example.com left"
    assert "ValueError: refused a***@example.com" in line["traceback"]


def send(project: Project, *options: str, env: dict[str, str] | None = None) -> str:
    """A real `digest send` with one reader deferred once and one refused; its standard error."""
    project.smtp.script.defer = {"ann@example.com": 1}
    project.smtp.script.defer_reply = DEFERRAL
    project.smtp.script.reject = {"bob@example.com": REFUSAL}
    environment = {**os.environ, "DIGEST_NOW": project.now.isoformat()}
    environment.pop("DIGEST_LOG_FORMAT", None)
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project.config), *options, "send"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 delivered, 1 failed, 0 pending" in result.stdout
    return result.stderr


def test_a_real_send_logs_json_lines_without_a_full_address(project: Project) -> None:
    stderr = send(project, "--log-format", "json", "-v")

    lines = [json.loads(line) for line in stderr.splitlines()]
    assert lines, "the send logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert line["time"].endswith("Z")
    for address in ("ann@example.com", "bob@example.com"):
        assert address not in stderr
    messages = [line["message"] for line in lines]
    # The deferral (with the server's reply quoting the address) and the refusal were logged,
    # masked; the command's own progress line became a record too.
    assert any(m.startswith("a***@example.com: 451 4.2.0 <a***@example.com>") for m in messages)
    failed = [line for line in lines if line.get("event") == "delivery failed"]
    assert [line["message"] for line in failed] == [
        f"issue {failed[0]['issue']}: b***@example.com failed: 550 5.1.1 <b***@example.com>:"
        " no such user"
    ]
    sent = [line for line in lines if line.get("event") == "issue sent"]
    assert len(sent) == 1 and sent[0]["issue"] == failed[0]["issue"]
    assert any(line["logger"] == "digest.cli" and "Sending" in line["message"] for line in lines)


def test_log_addresses_shows_them_for_debugging_and_the_variable_sets_json(
    project: Project,
) -> None:
    stderr = send(project, "-v", "--log-addresses", env={"DIGEST_LOG_FORMAT": "json"})

    lines = [json.loads(line) for line in stderr.splitlines()]
    assert any("bob@example.com failed" in line["message"] for line in lines)
    assert any(line["message"].startswith("ann@example.com: 451") for line in lines)


def test_text_logs_are_masked_too(project: Project) -> None:
    stderr = send(project, "-v")

    assert "b***@example.com failed" in stderr
    assert "ann@example.com" not in stderr and "bob@example.com" not in stderr


def test_an_unknown_log_format_is_a_usage_error(project: Project) -> None:
    result = project.run_process("--log-format", "xml", "check")

    assert result.returncode == 2
    assert "Invalid value for '--log-format'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_json_line_carries_a_traceback_and_a_stack_masked_or_not() -> None:
    """Unfiltered (--log-addresses), the formatter writes the traceback itself; with the filter,
    a stack logged with stack_info is masked like everything else."""
    try:
        raise ValueError("refused ann@example.com")
    except ValueError:
        failed = record("send failed")
        failed.exc_info = sys.exc_info()
    failed.stack_info = "Stack (most recent call last):\n  sending to bob@example.com"
    line = json.loads(JsonLines().format(failed))
    assert "ValueError: refused ann@example.com" in line["traceback"]
    assert line["stack"].endswith("sending to bob@example.com")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    handler.addFilter(MaskAddresses())
    stacked = record("send failed")
    stacked.stack_info = "Stack (most recent call last):\n  sending to bob@example.com"
    handler.handle(stacked)
    assert json.loads(stream.getvalue())["stack"].endswith("sending to b***@example.com")
