"""Setting up and checking a newsletter: `init`, `check`, `demo`, `serve` for the public
app and the live preview, `migrate` to move the state into PostgreSQL, and `backup` and
`restore` to copy the state out and put it back."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from digest import store
from digest.cli.options import (
    current_time,
    metrics_address,
    metrics_listen_option,
    with_config,
)
from digest.cli.output import err, out, plural, print_problems
from digest.config.schema import Config
from digest.core.errors import ConfigError, DigestError, StateError


@click.command()
@click.option("--feeds", is_flag=True, help="Also fetch every feed now and report its health.")
@click.option(
    "--health",
    is_flag=True,
    help="Instead, check the running newsletter (missed slot, failing feeds, complaint and"
    " bounce rates): one line per problem and exit 1, or 'healthy'. For cron or monitoring.",
)
@with_config
def check(config: Config, feeds: bool, health: bool) -> None:
    """Validate config.yaml, the subscribers file and the templates (no network but the
    bounce mailbox's IMAP server, when one is configured)."""
    from digest.run.check import bounce_mailbox_warnings, check_project, health_problems

    if health:
        problems = health_problems(config, current_time())
        for problem in problems:
            out.print(problem, markup=False)
        if problems:
            raise click.exceptions.Exit(1)
        out.print("healthy")
        return
    report = check_project(config, os.environ)
    for warning in (*report.warnings, *bounce_mailbox_warnings(config)):
        err.print(f"Warning: {warning}", markup=False)
    if not report.ok:
        for error in report.errors:
            err.print(f"Error: {error}", markup=False)
        raise click.exceptions.Exit(2)
    out.print(
        f"{report.source}: OK: {plural(report.feeds, 'feed')},"
        f" {plural(report.subscribers, 'subscriber')}, templates render.",
        markup=False,
    )
    if feeds:
        _feed_health(config)


def _feed_health(config: Config) -> None:
    from rich.table import Table
    from rich.text import Text

    from digest.run.check import feed_health

    table = Table("Feed", "Status", "Entries", "Newest post", "Time", "Problems")
    failing = False
    for row in feed_health(config, current_time()):
        newest = f"{row.newest:%Y-%m-%d}" if row.newest else "-"
        table.add_row(
            Text(row.name),
            row.status,
            str(row.entries),
            newest,
            f"{row.elapsed:.2f}s",
            Text("; ".join(row.problems) or "-"),
        )
        failing = failing or row.status == "failed"
    out.print(table)
    if failing:
        raise DigestError("some feeds are failing; see the table above")


@click.command()
@click.option(
    "--dir",
    "directory",
    default="demo-output",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo writes its config, preview and received mail.",
)
def demo(directory: Path) -> None:
    """Run the whole job on bundled sample feeds, into a mail server on 127.0.0.1."""
    from digest.run.demo import run_demo

    result = run_demo(directory, current_time())
    report = result.report
    print_problems(report.feed_problems)
    out.print(f"[bold]Issue:[/bold] {result.subject}")
    out.print(
        f"Collected {report.post_count} posts from the sample feeds;"
        f" delivered {report.sent}, failed {report.failed}, pending {report.pending}."
    )
    out.print(f"Preview (as subscribers see it): {result.preview}")
    out.print(f"Messages received by the demo mail server ({len(result.received)}):")
    for path in result.received:
        out.print(f"  {path}")
    if result.archive.exists():
        out.print(f"The issue on the web (static archive): {result.archive}", markup=False)
    # Name the program as it was run (.venv/bin/digest under `make demo`), so the hint works as is.
    program = sys.argv[0] if Path(sys.argv[0]).name == "digest" else "digest"
    out.print(f"Try next: {program} --config {result.config} history", markup=False)
    out.print(
        f"      and: {program} --config {result.config} serve   (sign-up at"
        " http://127.0.0.1:8025/subscribe, the archive at http://127.0.0.1:8025/archive/)",
        markup=False,
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Public app's address.")
@click.option(
    "--port",
    default=8025,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Public app's port (unsubscribe, sign-up, archive, health); 0: any. Warns when"
    " newsletter.public_url names another.",
)
@click.option(
    "--workbench-host",
    default="127.0.0.1",
    show_default=True,
    help="The editor's workbench (live preview) address; DIGEST_WORKBENCH_PASSWORD guards it.",
)
@click.option(
    "--workbench-port",
    default=8026,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The workbench's port; 0: any.",
)
@click.option(
    "--preview/--no-preview",
    default=True,
    show_default=True,
    help="Run the workbench (live preview); turn it off on a public server.",
)
@metrics_listen_option
@click.pass_obj
def serve(
    config_path: Path,
    host: str,
    port: int,
    workbench_host: str,
    workbench_port: int,
    preview: bool,
    metrics_listen: str | None,
) -> None:
    """Run the one-click unsubscribe endpoint and, on a port of its own, the live preview."""
    from digest.metrics.endpoint import serving
    from digest.web import launch

    plan = launch.plan(
        config_path,
        current_time,
        public=(host, port),
        workbench=(workbench_host, workbench_port) if preview else None,
    )
    public = plan.public_url
    click.echo(f"Serving {plan.title} on {public}")
    click.echo(f"  unsubscribe: {public}/unsubscribe?token=...   health: {public}/healthz")
    if plan.signup:
        click.echo(f"  sign-up: {public}/subscribe")
    if plan.archive:
        click.echo(f"  archive: {public}/archive/   feed: {public}/feed.atom")
    if plan.clicks:
        click.echo(f"  click redirects: {public}/r/... (digest clicks shows the counts)")
    if plan.workbench_url:
        guarded = " (password required)" if plan.password else ""
        click.echo(
            f"  live preview: {plan.workbench_url}/preview{guarded} (reloads when you save a file)"
        )
    for warning in plan.warnings:
        err.print(f"Warning: {warning}", markup=False)
    address = metrics_address(plan.config.metrics, metrics_listen)
    with (
        store.pool(plan.config),  # PostgreSQL: connections kept for the requests to borrow
        serving(plan.config, address, current_time) as metrics_url,
    ):
        if metrics_url:
            click.echo(f"  metrics: {metrics_url} (not on the public port)")
        launch.serve(plan.listeners, plan.background)


@click.command()
@click.argument(
    "directory", default=".", required=False, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--templates",
    "copy_templates",
    is_flag=True,
    help="Also copy every bundled template into templates/ (you then maintain them yourself).",
)
def init(directory: Path, copy_templates: bool) -> None:
    """Create a ready-to-edit newsletter in DIRECTORY (default: here); overwrites nothing."""
    from digest.cli.scaffold import init_project

    created = init_project(directory, copy_templates=copy_templates)
    out.print(f"Created a newsletter in {directory}:", markup=False)
    for path in created:
        out.print(f"  {path}", markup=False)
    config = directory / "config.yaml"
    templates = directory / "templates"
    if copy_templates:
        out.print(
            f"The bundled templates are copied into {templates}: edit them freely; newer"
            " releases will not change them.",
            markup=False,
        )
    else:
        out.print(
            f"{templates} holds only a README.txt, so the bundled templates are used and improve"
            " with each release; to change one, put a file there (the README says how).",
            markup=False,
        )
    out.print(
        f"Next: edit {config}, then `digest --config {config} check` and"
        f" `digest --config {config} serve` for a live preview.",
        markup=False,
    )
    out.print(
        "Starting on a blog with years of posts? Once your own feeds are in config.yaml,"
        f" `digest --config {config} mark-seen` records every post they carry today as already"
        " sent, so the first issue brings only what is new.",
        markup=False,
    )


@click.command()
@click.option(
    "--to",
    "target",
    required=True,
    metavar="postgresql://...",
    help="The empty PostgreSQL database to copy the state into.",
)
@click.option(
    "--from",
    "source",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SQLite state file to copy (default: config.yaml's `state:`).",
)
@click.pass_obj
def migrate(config_path: Path, target: str, source: Path | None) -> None:
    """Copy the SQLite state into an empty PostgreSQL database and check every table."""
    from rich.table import Table

    from digest.config.schema import load_config
    from digest.store.location import database_url, is_database_url
    from digest.store.migrations import LATEST
    from digest.store.transfer import copy_to_postgres

    if not is_database_url(target):
        raise ConfigError(
            "--to takes a PostgreSQL database's URL: postgresql://user@host:port/database"
        )
    try:
        url = database_url(target)
    except ValueError as error:
        raise ConfigError(f"--to: {error}") from None
    if source is None:
        where = load_config(config_path).state_path
        if isinstance(where, store.DatabaseURL):
            raise ConfigError(
                f"config.yaml's state: is a PostgreSQL database already ({where}); name the"
                " SQLite file to copy with --from PATH"
            )
        source = where
    transfer = copy_to_postgres(source, url)
    table = Table("Table", "Rows in the file", "Rows copied", "Checksum")
    for copied in transfer.tables:
        table.add_row(
            copied.name,
            str(copied.source_rows),
            str(copied.target_rows),
            "matches" if copied.matches else "DIFFERS",
        )
    out.print(table)
    if transfer.upgraded_from < LATEST:
        out.print(
            f"{source} was first upgraded from schema {transfer.upgraded_from} to {LATEST},"
            " as any writing command would.",
            markup=False,
        )
    if not transfer.ok:
        differ = ", ".join(t.name for t in transfer.tables if not t.matches)
        raise StateError(
            f"the copy of {differ} does not match the file; it was rolled back and {url} is as"
            " empty as it was"
        )
    out.print(
        f"Copied {plural(transfer.rows, 'row')} in {plural(len(transfer.tables), 'table')}"
        f" from {source} into {url}: every count and checksum matches.",
        markup=False,
    )
    out.print(
        f"Next: on every machine, set `state: {url}` in config.yaml (or `state: ${{DIGEST_STATE}}`"
        f" with the URL in the environment) and start digest again. {source} is no longer"
        " written; keep it as a backup.",
        markup=False,
    )


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@with_config
def backup(config: Config, path: Path) -> None:
    """Copy the state into a new backup file PATH, with its checksum beside it.

    One consistent snapshot, taken while digest runs on, written owner-only; PATH.json beside
    it says what it is (schema, digest release, time) and holds its SHA-256."""
    from digest.store.backup import sidecar_of, take

    info = take(config.state_path, path, current_time())
    out.print(
        f"Backed up {config.state_path} to {path} ({plural(info.size, 'byte')}, schema"
        f" {info.schema}); its SHA-256 and what it is are in {sidecar_of(path)}.",
        markup=False,
    )
    out.print(
        "It holds every reader's address and the signing secret: encrypt it before it leaves"
        " this machine, and keep it off it.",
        markup=False,
    )


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "target",
    metavar="STATE",
    help="The new, empty state to restore into: a file, or a postgresql:// URL"
    " (default: config.yaml's `state:`).",
)
@click.pass_obj
def restore(config_path: Path, path: Path, target: str | None) -> None:
    """Put the backup PATH back into an empty state, and verify it there.

    The checksum and the schema (and, for a SQLite file, SQLite's integrity check) are checked
    before the copy takes the state's place; a state with anything in it is never overwritten."""
    from digest.config.schema import load_config
    from digest.store.backup import restore as restore_backup
    from digest.store.location import database_url, is_database_url

    where: store.StateLocation
    if target is None:
        where = load_config(config_path).state_path
    elif is_database_url(target):
        try:
            where = database_url(target)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--to") from None
    else:
        where = Path(target)
    restored = restore_backup(path, where)
    info = restored.info
    checked = (
        "checksum, integrity check and schema"
        if isinstance(restored.target, Path)
        else "checksum and schema"
    )
    out.print(
        f"Restored {path} (taken {info.taken_at} by digest {info.digest_version}, schema"
        f" {info.schema}) into {restored.target}: {checked} verified.",
        markup=False,
    )
    out.print(
        "Next: start digest against it; `digest send` finishes an issue the backup caught"
        " half-sent, to the readers it had not recorded as delivered.",
        markup=False,
    )
