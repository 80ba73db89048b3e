"""The web archive of sent issues: write it as static files, `withdraw` an issue, `add-past`
issues sent before the archive was on."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.options import current_time, with_config
from digest.cli.output import out, plural
from digest.config.schema import Config, load_config


@click.group(invoke_without_command=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the static archive into (default: archive.out_dir).",
)
@click.pass_context
def archive(ctx: click.Context, out_dir: Path | None) -> None:
    """Write the web archive of sent issues (pages, index, feed) as static files."""
    if ctx.invoked_subcommand is not None:
        if out_dir is not None:
            raise click.UsageError("--out goes with `digest archive` alone")
        return
    from digest.archive.files import publish

    config = load_config(ctx.obj)
    if out_dir is None:
        if not config.archive.out_dir:
            raise click.UsageError("give --out DIR, or set archive.out_dir in config.yaml")
        out_dir = config.resolve(config.archive.out_dir)
    count = publish(config, out_dir, current_time())
    out.print(f"Wrote the archive of {plural(count, 'issue')} to {out_dir}", markup=False)


@archive.command()
@click.argument("number", type=click.IntRange(min=1))
@with_config
def withdraw(config: Config, number: int) -> None:
    """Take issue NUMBER off the web for good: 410 Gone, gone from the index and feed."""
    from digest.archive.files import withdraw as withdraw_issue

    done = withdraw_issue(config, number, current_time())
    if done.withdrawn:
        out.print(f"Issue {number} is withdrawn: its page now answers 410 Gone.", markup=False)
    else:
        out.print(f"Issue {number} was already withdrawn; nothing changed.", markup=False)
    if done.rewritten is not None:
        out.print(f"Rewrote the archive in {done.rewritten}", markup=False)


@archive.command("add-past")
@click.option(
    "--dry-run", is_flag=True, help="List the issues that would be added; change nothing."
)
@with_config
def add_past(config: Config, dry_run: bool) -> None:
    """Publish the issues sent before the archive was on, numbered in the order they were sent."""
    from digest.archive.backfill import add_past_issues

    result = add_past_issues(config, current_time(), dry_run=dry_run)
    if not result.issues:
        out.print("No past issues to add: every sent issue is in the archive.", markup=False)
        return
    verb = "Would add" if dry_run else "Added"
    out.print(f"{verb} {plural(len(result.issues), 'past issue')}:", markup=False)
    for issue in result.issues:
        sent = issue.sent_at.date().isoformat()
        out.print(f"  {issue.number}  {sent}  {issue.subject}  {issue.url}", markup=False)
    if result.rewritten is not None:
        out.print(f"Rewrote the archive in {result.rewritten}", markup=False)
