"""The `digest` command's entry point, the same for the installed script and `python -m digest`:
both run the CLI under the name `digest`, whatever the executable is called."""

from __future__ import annotations

from digest.cli.main import main as command


def main() -> None:
    """Run the `digest` command."""
    command(prog_name="digest")
