"""The `digest` group: `--config` and `--verbose`, every command added to it, and the one place a
`DigestError` becomes a line on standard error and an exit code.

Import the command from here: `from digest.cli.main import main`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from digest.cli import archive, bounces, issue, readers, report, schedule, send, setup
from digest.cli.output import err, errors_as_log_records
from digest.core import logs
from digest.core.errors import DigestError


class DigestGroup(click.Group):
    """A click group that reports DigestError as one line with its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as error:
            for line in str(error).splitlines() or [""]:
                err.print(f"Error: {line}", markup=False)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            err.print("Interrupted.")
            ctx.exit(130)


@click.group(cls=DigestGroup)
@click.option(
    "--config",
    "config_path",
    default="config.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The newsletter's config file.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, step by step.")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    envvar=logs.FORMAT_VARIABLE,
    show_envvar=True,
    help="Log lines for a person (text) or one JSON object a line for a machine (json).",
)
@click.option(
    "--log-addresses",
    is_flag=True,
    help="Show readers' addresses in full in the log, to debug a delivery (masked otherwise).",
)
@click.pass_context
def main(
    ctx: click.Context, config_path: Path, verbose: bool, log_format: str, log_addresses: bool
) -> None:
    """digest: your feeds' new posts, in subscribers' inboxes, on schedule."""
    handler = logs.configure(
        verbose=verbose, log_format=log_format, show_addresses=log_addresses, stream=sys.stderr
    )
    if handler is not None and log_format == "json":
        errors_as_log_records()
    ctx.obj = config_path


# Each command module defines its commands; they join the group here, so no command module
# imports this one. `digest --help` lists them by name whatever the order here.
for command in (
    setup.init,
    setup.check,
    setup.demo,
    setup.serve,
    setup.migrate,
    setup.backup,
    setup.restore,
    issue.preview,
    issue.posts,
    issue.note,
    issue.leave_out,
    issue.pin,
    issue.mark_seen,
    send.send,
    send.history,
    send.compact,
    report.report,
    schedule.show_schedule,
    schedule.run,
    schedule.approve,
    schedule.hold,
    readers.subscribers,
    readers.unsubscribe,
    readers.resubscribe,
    readers.snippet,
    bounces.bounces,
    archive.archive,
):
    main.add_command(command)
