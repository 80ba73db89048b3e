"""The `digest` group: `--config` and `--verbose`, every command added to it, and the one place a
`DigestError` becomes a line on standard error and an exit code.

Import the command from here: `from digest.cli.main import main`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from digest.cli.output import err, errors_as_log_records
from digest.core import logs
from digest.core.errors import DigestError


class DigestGroup(click.Group):
    """A click group that reports DigestError as one line with its exit code, and loads each
    command's module only when the command is wanted (see COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[cmd_name]
        module = importlib.import_module(f"digest.cli.{module_name}")
        command: click.Command = getattr(module, attribute)
        return command

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


# Each command module defines its commands; the group names them here and imports a command's
# module only when that command runs (or `--help` lists them all), so `digest history` does not
# load the fetching, rendering and sending code that `digest preview` and `digest send` need.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("setup", "init"),
    "check": ("setup", "check"),
    "demo": ("setup", "demo"),
    "serve": ("setup", "serve"),
    "migrate": ("setup", "migrate"),
    "backup": ("setup", "backup"),
    "restore": ("setup", "restore"),
    "preview": ("issue", "preview"),
    "posts": ("issue", "posts"),
    "note": ("issue", "note"),
    "leave-out": ("issue", "leave_out"),
    "pin": ("issue", "pin"),
    "mark-seen": ("issue", "mark_seen"),
    "send": ("send", "send"),
    "history": ("send", "history"),
    "clicks": ("send", "clicks"),
    "report": ("report", "report"),
    "compact": ("send", "compact"),
    "schedule": ("schedule", "show_schedule"),
    "run": ("schedule", "run"),
    "approve": ("schedule", "approve"),
    "hold": ("schedule", "hold"),
    "subscribers": ("readers", "subscribers"),
    "unsubscribe": ("readers", "unsubscribe"),
    "resubscribe": ("readers", "resubscribe"),
    "snippet": ("readers", "snippet"),
    "bounces": ("bounces", "bounces"),
    "archive": ("archive", "archive"),
}
