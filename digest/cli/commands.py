"""The `digest` command: parse options, call the library, turn DigestError into exit codes."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from digest import store
from digest.config.schema import Config, load_config
from digest.core.errors import DigestError
from digest.core.models import Delivery, DeliveryStatus, SendReport
from digest.core.stopping import GracefulStop
from digest.run import editions, rehearsal
from digest.run import preview as previewing
from digest.run import send as sending

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

F = TypeVar("F", bound=Callable[..., Any])
NOW_VARIABLE = "DIGEST_NOW"


out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _open_in_browser(url: str) -> bool:
    import webbrowser

    return webbrowser.open(url)


def _count(number: int, noun: str) -> str:
    """'1 feed', '2 feeds'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def current_time() -> datetime:
    """Now, in UTC; DIGEST_NOW (ISO 8601) overrides it for rehearsals and tests."""
    override = os.environ.get(NOW_VARIABLE)
    if not override:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(override)
    except ValueError:
        raise DigestError(f"{NOW_VARIABLE}={override!r} is not an ISO 8601 date and time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
@click.pass_context
def main(ctx: click.Context, config_path: Path, verbose: bool) -> None:
    """digest: your feeds' new posts, in subscribers' inboxes, on schedule."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = config_path


def with_config(function: F) -> F:
    """Load the config named by --config and pass it as the first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(function, load_config(ctx.obj), *args, **kwargs)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper  # type: ignore[return-value]


def _print_problems(lines: tuple[str, ...]) -> None:
    for line in lines:
        err.print(f"Warning: {line}", markup=False)


def _print_report_problems(report: SendReport) -> None:
    _print_problems(report.feed_problems)
    _print_problems(
        tuple(f"invalid subscriber skipped: {row}" for row in report.skipped_subscribers)
    )


def _summarise(report: SendReport, verb: str) -> None:
    _print_report_problems(report)
    if report.skipped_reason:
        out.print(f"Nothing sent: {report.skipped_reason}.")
        return
    resumed = f" (resumed issue {report.issue_id})" if report.resumed else ""
    out.print(
        f"{verb} issue with {report.post_count} posts{resumed}: {report.sent} delivered,"
        f" {report.failed} failed, {report.pending} pending."
    )


@main.command()
@click.option("--feeds", is_flag=True, help="Also fetch every feed now and report its health.")
@with_config
def check(config: Config, feeds: bool) -> None:
    """Validate config.yaml, the subscribers file and the templates (no network but the
    bounce mailbox's IMAP server, when one is configured)."""
    from digest.run.check import bounce_mailbox_warnings, check_project

    report = check_project(config, os.environ)
    for warning in (*report.warnings, *bounce_mailbox_warnings(config)):
        err.print(f"Warning: {warning}", markup=False)
    if not report.ok:
        for error in report.errors:
            err.print(f"Error: {error}", markup=False)
        raise click.exceptions.Exit(2)
    out.print(
        f"{report.source}: OK: {_count(report.feeds, 'feed')},"
        f" {_count(report.subscribers, 'subscriber')}, templates render.",
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


@main.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in a browser.")
@click.option("--text", "show_text", is_flag=True, help="Print the plain-text part.")
@with_config
def preview(config: Config, out_path: Path | None, open_browser: bool, show_text: bool) -> None:
    """The next issue exactly as it will be sent; sends and records nothing."""
    prepared, html, text = previewing.preview(config, current_time())
    _print_problems(prepared.problems)
    for warning in prepared.rendered.warnings:
        err.print(f"Warning: {warning}", markup=False)
    if show_text:
        click.echo(text)
    if out_path is None and (open_browser or not show_text):
        out_path = Path("preview.html")
    if prepared.sample:
        err.print(
            "Nothing new: `digest send` would send nothing now."
            " The preview shows sample posts so you can see the design.",
            markup=False,
        )
    if out_path is not None:
        out_path.write_text(html, encoding="utf-8")
        what = "Preview with sample posts" if prepared.sample else "Preview of the next issue"
        out.print(
            f"{what} ({prepared.issue.post_count} posts,"
            f" subject {prepared.rendered.subject!r}) written to {out_path}",
            markup=False,
        )
        if open_browser and not _open_in_browser(out_path.resolve().as_uri()):
            err.print(f"No browser could be opened here; open {out_path} yourself.", markup=False)


class SendProgress:
    """A live bar (sent, failed, pending, rate, ETA) on a terminal; else a line every 10 s."""

    INTERVAL = 10.0

    def __init__(self, console: Console) -> None:
        self.console = console
        self.counts = {status: 0 for status in DeliveryStatus}
        self.total = 0
        self.started = time.monotonic()
        self.last_line = self.started
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> SendProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.total:
            self._line()

    def start(self, total: int, already_done: int) -> None:
        """Show the bar (or the first line) once the number of messages is known."""
        self.total, self.started = total, time.monotonic()
        self.last_line = self.started
        if already_done:
            self.console.print(
                f"Resuming: {already_done} already handled, {total} to send.", markup=False
            )
        if self.console.is_terminal and total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("Sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[summary]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.bar.add_task("send", total=total, summary="", rate="")
            self.bar.start()

    def advance(self, delivery: Delivery) -> None:
        """Count one settled recipient and refresh the display."""
        self.counts[delivery.status] += 1
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, summary=self._summary(), rate=self._rate())
        elif time.monotonic() - self.last_line >= self.INTERVAL:
            self._line()

    def _summary(self) -> str:
        sent, failed, pending = (self.counts[s] for s in DeliveryStatus)
        return f"{sent} sent, {failed} failed, {pending} pending"

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{sum(self.counts.values()) / elapsed:.0f} msg/s"

    def _line(self) -> None:
        self.last_line = time.monotonic()
        done = sum(self.counts.values())
        self.console.print(
            f"Sending: {done}/{self.total} ({self._summary()}), {self._rate()}", markup=False
        )


@main.command()
@click.option("--to", "recipients", multiple=True, help="Test send to these addresses only.")
@click.option("--dry-run", is_flag=True, help="Write .eml files to the outbox; no SMTP.")
@with_config
def send(config: Config, recipients: tuple[str, ...], dry_run: bool) -> None:
    """Send the next issue to every subscriber (resuming an unfinished one first)."""
    now = current_time()
    if recipients and dry_run:
        raise click.UsageError("use either --to or --dry-run, not both")
    if dry_run:
        report = rehearsal.dry_run(config, now)
        _print_report_problems(report)
        if report.skipped_reason:
            out.print(f"Nothing to write: {report.skipped_reason}.")
        else:
            out.print(
                f"Wrote {report.sent} messages ({report.post_count} posts) to {report.outbox}"
            )
        return
    if recipients:
        report = rehearsal.test_send(config, now, tuple(map(_address, recipients)))
        _summarise(report, "Test-sent")
    else:
        with GracefulStop() as stop, SendProgress(err) as progress:
            report = sending.send(
                config, now, progress=progress, clock=lambda: datetime.now(UTC), stop=stop
            )
        _summarise(report, "Sent")
        if stop.is_set() and report.pending:
            raise DigestError(
                f"stopped: {report.pending} messages not sent yet;"
                " run `digest send` again to finish the issue"
            )
    if report.pending:
        raise DigestError(
            f"{report.pending} messages left pending after temporary failures;"
            " run `digest send` again to retry them"
        )


FAILED_ADDRESSES_SHOWN = 20


@main.command()
@click.option("--limit", default=20, show_default=True, help="How many issues to list.")
@with_config
def history(config: Config, limit: int) -> None:
    """Issues sent so far: date, posts, delivered / failed / pending, failed addresses."""
    from digest.store.bounces import IssueBounces

    with store.open(config, read_only=True) as state:
        rows = state.ledger.history(limit)
        skipped = state.ledger.skipped_slots(limit)
        suppressed = len(state.suppressions.suppressed())
        bounced = state.bounces.by_issue()
    if not rows:
        out.print("No issues sent yet.")
        _print_skipped(skipped)
        return
    from rich.table import Table

    table = Table("Issue", "Date", "Posts", "Delivered", "Failed", "Pending")
    for row in rows:
        finished = "" if row.issue.finished_at else " (unfinished)"
        table.add_row(
            str(row.issue.id),
            f"{row.issue.created_at:%Y-%m-%d %H:%M}{finished}",
            str(row.issue.post_count),
            str(row.sent),
            str(row.failed),
            str(row.pending),
        )
    out.print(table)
    for row in rows:
        counted = bounced.get(row.issue.id, IssueBounces())
        if row.sent and (counted.complaints or counted.hard or counted.soft):
            rate = 100 * counted.complaints / row.sent
            warn = " (over 0.3%: mailbox providers may block the sender)" if rate > 0.3 else ""
            out.print(
                f"Issue {row.issue.id}: {counted.hard} hard bounces, {counted.soft} soft,"
                f" {counted.complaints} complaints; complaint rate {rate:.2f}%{warn}"
            )
    # Addresses go on plain lines, never in a cell, so a narrow terminal cannot fold them.
    for row in rows:
        for failure in row.failures[:FAILED_ADDRESSES_SHOWN]:
            reply = f": {failure.reply}" if failure.reply else ""
            out.print(f"Issue {row.issue.id} failed {failure.email}{reply}", markup=False)
        hidden = len(row.failures) - FAILED_ADDRESSES_SHOWN
        if hidden > 0:
            out.print(f"Issue {row.issue.id}: {hidden} more failed addresses not shown.")
    _print_skipped(skipped)
    if suppressed:
        out.print(f"{suppressed} unsubscribed addresses are skipped on every send.")


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    for key, reason in skipped:
        when = datetime.fromisoformat(key)
        out.print(f"Slot {when:%Y-%m-%d %H:%M} UTC skipped: {reason}", markup=False)


@main.command()
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
    _print_problems(report.feed_problems)
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


@main.command("schedule")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--after",
    "after_text",
    metavar="DATE",
    help="ISO date or date-time to count from (default: now); without an offset it is read"
    " in the schedule's time zone.",
)
@with_config
def show_schedule(config: Config, count: int, after_text: str | None) -> None:
    """Print the next send slots, one ISO 8601 time with its UTC offset per line."""
    from digest.run import slots

    plan = slots.require_schedule(config)
    after = current_time()
    if after_text:
        try:
            after = slots.parse_when(after_text, plan)
        except ValueError:
            message = f"{after_text!r} is not an ISO date or date-time such as 2027-03-29T08:00"
            raise click.BadParameter(message, param_hint="--after") from None
    for slot in slots.next_slots(plan, after, count):
        click.echo(slot.isoformat())


@main.command()
@click.option("--once", is_flag=True, help="Send the due slot, or else the next one, now; exit.")
@with_config
def run(config: Config, once: bool) -> None:
    """Send at every slot until stopped; SIGTERM or Ctrl-C finishes the message in flight."""
    from digest.run import approval, schedule

    for module in (schedule, approval):
        logging.getLogger(module.__name__).setLevel(logging.INFO)
    clock = schedule.Clock.starting_at(current_time())
    if not once:
        schedule.run_forever(config, clock)
        return
    result = schedule.run_once(config, clock)
    if result is None:
        out.print("Nothing to send: no unfinished issue and no future slot.")
        return
    slot = result.slot.isoformat() if result.slot else "-"
    if result.report is None:
        out.print(f"Slot {slot} was already handled; nothing sent.")
        return
    out.print(f"Slot {slot}:")
    _summarise(result.report, "Sent")
    if result.report.pending:
        raise DigestError(
            f"{result.report.pending} messages left pending after temporary failures;"
            " run `digest send` again to retry them"
        )


@main.group(invoke_without_command=True)
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
    out.print(f"Wrote the archive of {_count(count, 'issue')} to {out_dir}", markup=False)


@archive.command()
@click.argument("number", type=click.IntRange(min=1))
@with_config
def withdraw(config: Config, number: int) -> None:
    """Take issue NUMBER off the web for good: 410 Gone, gone from the index and feed."""
    from digest.archive.files import publish

    with store.open(config) as state:
        withdrawn = state.archive.withdraw(number, current_time())
    if withdrawn is None:
        raise DigestError(f"there is no archived issue {number}; the archive index lists them")
    if withdrawn:
        out.print(f"Issue {number} is withdrawn: its page now answers 410 Gone.", markup=False)
    else:
        out.print(f"Issue {number} was already withdrawn; nothing changed.", markup=False)
    if config.archive.enabled and config.archive.out_dir:
        target = config.resolve(config.archive.out_dir)
        publish(config, target, current_time())
        out.print(f"Rewrote the archive in {target}", markup=False)


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
    out.print(f"{verb} {_count(len(result.issues), 'past issue')}:", markup=False)
    for issue in result.issues:
        sent = issue.sent_at.date().isoformat()
        out.print(f"  {issue.number}  {sent}  {issue.subject}  {issue.url}", markup=False)
    if result.rewritten is not None:
        out.print(f"Rewrote the archive in {result.rewritten}", markup=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Public app's address.")
@click.option(
    "--port",
    default=8025,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Public app's port (unsubscribe, health); 0: any.",
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
@click.pass_obj
def serve(
    config_path: Path,
    host: str,
    port: int,
    workbench_host: str,
    workbench_port: int,
    preview: bool,
) -> None:
    """Run the one-click unsubscribe endpoint and, on a port of its own, the live preview."""
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
    if plan.workbench_url:
        guarded = " (password required)" if plan.password else ""
        click.echo(
            f"  live preview: {plan.workbench_url}/preview{guarded} (reloads when you save a file)"
        )
    for warning in plan.warnings:
        err.print(f"Warning: {warning}", markup=False)
    launch.serve(plan.listeners)


@main.command()
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


def _address(value: str) -> str:
    """An address given on the command line, in the canonical form the state keeps."""
    from digest.core.addresses import AddressError, canonical_address

    try:
        return canonical_address(value)
    except AddressError as error:
        raise click.BadParameter(f"{value!r} is not an email address: {error}") from None


@main.command()
@click.option("--stdin", "from_stdin", is_flag=True, help="Read one message on standard input.")
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Read this Maildir instead of the configured mailbox.",
)
@click.option("--show", is_flag=True, help="List recent reports and how each was classified.")
@click.option("--limit", default=30, show_default=True, help="How many reports --show lists.")
@with_config
def bounces(config: Config, from_stdin: bool, maildir: Path | None, show: bool, limit: int) -> None:
    """Read bounce and complaint reports and suppress the addresses they tie to a delivery."""
    from rich.table import Table

    from digest.bounces import apply as bounce_reports
    from digest.bounces.report import MAX_REPORT_BYTES

    if show:
        rows = bounce_reports.recent_reports(config, limit)
        if not rows:
            out.print("No bounce or complaint reports yet.")
            return
        table = Table("When", "Source", "Kind", "Status", "Issue", "Outcome")
        for row in rows:
            issue = "sign-up mail" if row.issue_id is None and row.email else ""
            table.add_row(
                f"{row.received_at:%Y-%m-%d %H:%M}",
                row.source,
                row.kind,
                row.status,
                str(row.issue_id) if row.issue_id is not None else issue,
                row.outcome,
            )
        out.print(table)
        for row in rows:
            if row.email:
                out.print(f"{row.kind} {row.email}: {row.outcome} ({row.detail})", markup=False)
        out.print("What the outcomes mean:")
        for outcome in dict.fromkeys(row.outcome for row in rows):
            meaning = bounce_reports.OUTCOME_MEANINGS.get(outcome, "")
            out.print(f"  {outcome}: {meaning}".rstrip(), markup=False)
        return
    data = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)[:MAX_REPORT_BYTES] if from_stdin else None
    tally = bounce_reports.collect_reports(config, current_time(), stdin=data, maildir=maildir)
    counts = tally.outcomes
    out.print(
        f"Read {_count(tally.total, 'message')}: {counts['suppressed']} suppressed,"
        f" {counts['counted']} soft bounces counted, {counts['dropped_signup']} pending sign-ups"
        f" dropped, {counts['ignored']} auto-replies ignored, {tally.not_tied} not tied to"
        f" a delivery (ignored), {counts['duplicate'] + counts['already_suppressed']} already"
        f" processed, {counts['left']} not bounces (left in the mailbox)."
    )
    for email in tally.suppressed:
        out.print(f"Suppressed {email}", markup=False)


@main.command()
@click.argument("address")
@with_config
def unsubscribe(config: Config, address: str) -> None:
    """Stop all mail to ADDRESS, whatever the subscriber list says."""
    email = _address(address)
    with store.open(config) as state:
        added = state.suppressions.suppress(
            email, current_time(), "manual", kind=store.SuppressionKind.MANUAL
        )
    if added:
        out.print(f"{email} is unsubscribed: no issue will be sent to it again.", markup=False)
    else:
        out.print(f"{email} was already unsubscribed; nothing changed.", markup=False)


@main.command()
@click.argument("address")
@with_config
def resubscribe(config: Config, address: str) -> None:
    """Undo an unsubscribe for ADDRESS (only on the person's own request)."""
    from digest.readers.subscribers import load_subscribers

    email = _address(address)
    with store.open(config) as state:
        removed = state.suppressions.unsuppress(email)
    if not removed:
        out.print(f"{email} was not unsubscribed; nothing changed.", markup=False)
        return
    listed = {s.email for s in load_subscribers(config.subscribers_path).subscribers}
    out.print(f"{email} is resubscribed.", markup=False)
    if email not in listed:
        err.print(
            f"Warning: {email} is not in {config.subscribers}; add it there to send to it.",
            markup=False,
        )


@main.group(invoke_without_command=True)
@click.pass_context
def subscribers(ctx: click.Context) -> None:
    """Count the subscribers; export, add or forget one (see the subcommands)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_subscriber_counts)


# How `digest subscribers` names each kind of bounce or complaint suppression.
_BOUNCE_GROUPS = {
    store.SuppressionKind.COMPLAINT: "complaint",
    store.SuppressionKind.SOFT_BOUNCES: "soft bounces",
    store.SuppressionKind.REFUSED: "refused during the send",
    store.SuppressionKind.HARD_BOUNCE: "hard bounce",
}


def _by_reason(rows: list[store.Suppression]) -> dict[str, list[str]]:
    """Bounce and complaint suppressions grouped by their kind, each with its reason."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        reason = row.reason or row.source
        groups.setdefault(_BOUNCE_GROUPS[row.kind], []).append(
            f"{row.email} ({row.at:%Y-%m-%d}: {reason})"
        )
    return groups


@with_config
def _subscriber_counts(config: Config) -> None:
    """Count the subscribers: listed, signed up, unsubscribed, invalid and duplicate rows."""
    from rich.table import Table
    from rich.text import Text

    from digest.readers import audience
    from digest.readers.subscribers import load_subscribers

    subscriber_list = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        suppressions = state.suppressions.all()
        secret = audience.forgetting_secret(state, config.secret)
        counted = audience.counts(state, subscriber_list, secret, audience.section_titles(config))
    bounce_rows = [row for row in suppressions if row.kind.is_bounce]
    listed = {s.email for s in subscriber_list.subscribers}
    suppressed = [row for row in suppressions if row.email in listed]
    elsewhere = len(suppressions) - len(suppressed)
    table = Table("", "Count", "Which")
    rows = [
        ("Listed", len(listed), [config.subscribers]),
        (
            "Unsubscribed",
            len(suppressed),
            [f"{row.email} ({row.source}, {row.at:%Y-%m-%d})" for row in suppressed],
        ),
        *(
            (f"Suppressed: {reason}", len(which), which)
            for reason, which in _by_reason(bounce_rows).items()
        ),
        ("Signed up and confirmed", counted.confirmed, []),
        ("Signed up, awaiting confirmation", counted.pending, []),
        ("Forgotten on request", counted.forgotten, []),
        ("Will receive the next issue", counted.receiving, []),
        ("Invalid rows (skipped)", len(subscriber_list.invalid), list(subscriber_list.invalid)),
        (
            "Duplicate rows (ignored)",
            len(subscriber_list.duplicates),
            list(subscriber_list.duplicates),
        ),
    ]
    for label, count, which in rows:
        table.add_row(label, str(count), Text("\n".join(which) or "-"))
    out.print(table)
    if elsewhere:
        out.print(f"{elsewhere} more unsubscribed addresses are not on the list.")
    if config.newsletter.choosable_sections:
        sections = Table("Section", "Receiving it")
        for title, count in counted.by_section.items():
            sections.add_row(title, str(count))
        out.print(sections)


@main.command()
@with_config
def snippet(config: Config) -> None:
    """Print an HTML sign-up form to paste into the organisation's own site."""
    from digest.readers import signup

    if not config.signup.enabled:
        raise DigestError("sign-up is off: set signup.enabled: true in config.yaml first")
    click.echo(signup.snippet(config), nl=False)


@subscribers.command("export")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path))
@with_config
def subscribers_export(config: Config, output_format: str, out_path: Path | None) -> None:
    """Everything held about each person: details, sections, consent and delivery counts."""
    from digest.readers import audience
    from digest.readers.subscribers import load_subscribers

    subscriber_list = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        people = audience.export(state, subscriber_list)
    text = audience.export_text(people, output_format)
    if out_path is None:
        click.echo(text, nl=False)
    else:
        out_path.write_text(text, encoding="utf-8")
        out.print(f"{_count(len(people), 'person')} written to {out_path}", markup=False)


@subscribers.command("forget")
@click.argument("address")
@with_config
def subscribers_forget(config: Config, address: str) -> None:
    """Erase ADDRESS everywhere (a right-to-erasure request); it stays off the list for good."""
    from digest.readers import audience

    email = _address(address)
    secret = editions.signing_secret(config)
    # No send may record a delivery to the address while it is being erased.
    with (
        store.lock(config, "send", command="subscribers forget"),
        store.open(config) as state,
    ):
        erased = audience.forget(state, email, secret, current_time())
    again = f"run `digest subscribers forget {email}` again to finish"
    if erased.unerased:
        raise DigestError(
            f"{email} is erased from the tables digest knows, but {', '.join(erased.unerased)}"
            f" still hold it: the erasure is not complete; clear those by hand, then {again}"
        )
    if not erased.checkpointed:
        raise DigestError(
            f"{email} is erased from every table, but another process is still reading an"
            f" older snapshot of {config.state_path}, so the erased bytes are still in the file"
            f" (or its write-ahead log); when it has finished (a `digest serve` request, an"
            f" export), {again}"
        )
    if erased.bytes_left:
        raise DigestError(
            f"{email} is erased from every table, but its bytes are still in"
            f" {config.state_path} after rebuilding it: the erasure is not complete"
        )
    held = "Erased everything held about" if erased.found else "Nothing is held about"
    out.print(
        f"{held} {email}; none of it is left in {config.state_path}, and a keyed hash keeps it"
        f" off the list. Remove it from {config.subscribers} too, if it is there.",
        markup=False,
    )
    if erased.in_content:
        err.print(
            f"Warning: {email} still appears in published content ({', '.join(erased.in_content)}:"
            " what the feeds or the editor wrote), which forget does not change.",
            markup=False,
        )


@subscribers.command("add")
@click.argument("address")
@click.option("--name", default="", help="The person's name.")
@click.option(
    "--source", required=True, help='How they consented, e.g. "paper form, open day 2026".'
)
@click.option("--section", "sections", multiple=True, help="A section they chose (repeatable).")
@with_config
def subscribers_add(
    config: Config, address: str, name: str, source: str, sections: tuple[str, ...]
) -> None:
    """Add someone who asked in person, with how they consented on record."""
    from digest.readers import audience

    email = _address(address)
    known = audience.section_titles(config)
    unknown = [section for section in sections if section not in known]
    if unknown:
        raise click.BadParameter(
            f"no section {unknown[0]!r}; the sections are: {', '.join(known)}",
            param_hint="--section",
        )
    with store.open(config) as state:
        if email in state.suppressions.suppressed():
            raise DigestError(
                f"{email} unsubscribed; only they can undo that (digest resubscribe on request)"
            )
        added = state.signups.add(email, name, sections or None, source, current_time())
    if added:
        out.print(f"{email} is subscribed (source: {source}).", markup=False)
    else:
        out.print(f"{email} was already subscribed; nothing changed.", markup=False)


# -- the editor's hand on the next issue ---------------------------------------------------


@main.command()
@click.argument("text", nargs=-1)
@click.option(
    "--file",
    "note_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the note (Markdown) from this file.",
)
@click.option("--show", is_flag=True, help="Print the note waiting for the next issue.")
@click.option("--clear", is_flag=True, help="Withdraw the note.")
@with_config
def note(
    config: Config, text: tuple[str, ...], note_file: Path | None, show: bool, clear: bool
) -> None:
    """A note (Markdown) above the sections of the next issue only: TEXT, --file, or $EDITOR."""
    from digest.issue import choices as editor

    if sum((bool(text), note_file is not None, show, clear)) > 1:
        raise click.UsageError("give the note as TEXT, --file, --show or --clear: only one")
    if show:
        current = editor.note(config)
        out.print(current if current else "No note for the next issue.", markup=False)
        return
    if clear:
        new = ""
    elif note_file is not None:
        new = editor.read_note_file(note_file)
    elif text:
        new = " ".join(text)
    else:
        edited = click.edit(editor.note(config), extension=".md")
        if edited is None:
            out.print("Note unchanged.")
            return
        new = edited
    kept = editor.set_note(config, new, current_time())
    if kept:
        out.print("The next issue will carry this note above its sections:", markup=False)
        out.print(kept, markup=False)
    else:
        out.print("No note for the next issue.")


@main.command()
@with_config
def posts(config: Config) -> None:
    """The next issue's candidate posts, with the short ids leave-out and pin take."""
    from digest.issue import choices as editor

    found = editor.next_posts(config, current_time())
    if not found:
        out.print("No new posts for the next issue.")
        return
    for candidate in found:
        post = candidate.post
        date = f"{post.published:%Y-%m-%d}" if post.published else ""
        out.print(
            f"{candidate.short_id}  {candidate.status:<8}  {date}  {post.title}  {post.link}",
            markup=False,
        )


STATUS_PHRASES = {
    "in": "in the next issue",
    "pinned": "pinned: in the next issue, first in its section",
    "left out": "left out of every issue until `digest leave-out --undo`",
    "not in": "not in the next issue (over a cap, or a duplicate)",
}


def _choose(config: Config, post_id: str, choice: Any, undo: bool) -> None:
    from digest.issue import choices as editor

    chosen = editor.choose(config, post_id, choice, current_time(), undo=undo)
    out.print(
        f"{chosen.short_id} {chosen.post.title}: {STATUS_PHRASES[chosen.status]}.", markup=False
    )


@main.command("leave-out")
@click.argument("post_id")
@click.option("--undo", is_flag=True, help="Put a left-out post back among the candidates.")
@with_config
def leave_out(config: Config, post_id: str, undo: bool) -> None:
    """Leave post POST_ID (from `digest posts`) out of every issue, until --undo."""
    from digest.core.models import Choice

    _choose(config, post_id, Choice.LEAVE_OUT, undo)


@main.command()
@click.argument("post_id")
@click.option("--undo", is_flag=True, help="Unpin the post.")
@with_config
def pin(config: Config, post_id: str, undo: bool) -> None:
    """Put post POST_ID in the next issue, first in its section, whatever the caps and filters."""
    from digest.core.models import Choice

    _choose(config, post_id, Choice.PIN, undo)


@main.command("mark-seen")
@with_config
def mark_seen(config: Config) -> None:
    """Record every post the feeds carry today as already sent: a clean start on an old blog."""
    from digest.issue import choices as editor

    report = editor.mark_seen(config, current_time())
    _print_problems(report.problems)
    out.print(
        f"Marked {_count(report.marked, 'post')} as already sent ({report.carried} in"
        f" {_count(report.feeds, 'feed')}); the next issue brings only posts that appear after"
        " now.",
        markup=False,
    )
    if report.failed:
        raise DigestError(
            f"{_count(len(report.failed), 'feed')} could not be read, so their posts are not"
            f" marked ({'; '.join(report.failed)}); run `digest mark-seen` again"
        )


def _decide(config: Config, decision: str) -> None:
    from digest.run import approval

    key = approval.decide(config, decision, current_time(), by="command line")
    when = datetime.fromisoformat(key)
    if decision == "approved":
        out.print(f"The issue due {when:%Y-%m-%d %H:%M} UTC is approved: `digest run` sends it.")
    else:
        out.print(f"The issue due {when:%Y-%m-%d %H:%M} UTC is held: it will not be sent.")


@main.command()
@with_config
def approve(config: Config) -> None:
    """Approve the issue waiting for approval (schedule.approval); within grace after its slot
    too."""
    _decide(config, "approved")


@main.command()
@with_config
def hold(config: Config) -> None:
    """Hold the issue waiting for approval: not sent; its posts wait for the next slot."""
    _decide(config, "held")
