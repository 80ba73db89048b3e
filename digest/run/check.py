"""What `digest check`, `digest serve` and the scheduler warn an editor or operator about.

`check_project` makes every decision of `digest check` and returns a CheckReport; the command
only prints it. A config, subscriber file or template that cannot be read at all raises its
ConfigError as usual (one line, exit 2); problems found once those are read are collected as
errors (exit 2: a local feed file missing, an unusable DKIM key, a bad smtp.return_path) or
warnings (exit 0: feeds that moved, went or keep failing, no one-click unsubscribe, a weak
signing secret, bounces tied by address alone, the latest issue's complaint or hard-bounce rate
over the `reports:` limits, invalid or duplicate subscriber rows, an issue too big for some
clients). `health_problems` is `digest check --health`: what a running
newsletter needs an operator for (a missed slot, a feed failing for days, too many complaints,
emails stuck in the outbox, a scheduled backup that stopped being taken).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from digest import store
from digest.core import headervalues
from digest.core.errors import ConfigError
from digest.core.redact import redact_url
from digest.feeds.advice import feed_advice

if TYPE_CHECKING:
    from digest.config.schema import Config, ScheduleConfig
    from digest.feeds.collect import FeedHealth
    from digest.store.bounces import IssueBounces

# Read here rather than imported from digest.core.tokens, which needs the state module.
SECRET_ENVIRONMENT_VARIABLE = "DIGEST_SECRET"

# The values shipped in deploy/digest.env.example and the docs: a secret equal to one of these is
# public knowledge, so anyone could forge unsubscribe links.
PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "secret", "your-secret-here"})
MIN_SECRET_BYTES = 32

# Where `digest serve` listens unless told otherwise (its --host and --port defaults).
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8025
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

# How much later than backup.every the newest scheduled backup may be before it is a problem:
# `digest run` looks whether one is due every hour, and a backup of a large state takes a while.
BACKUP_MARGIN = timedelta(hours=2)


@dataclass(frozen=True)
class CheckReport:
    """What `digest check` found: errors fail the check (exit 2), warnings do not."""

    source: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    feeds: int
    subscribers: int

    @property
    def ok(self) -> bool:
        """Whether the newsletter can be sent as configured."""
        return not self.errors


def secret_warnings(secret: str) -> list[str]:
    """Warnings for a signing secret that is a known placeholder or too short to be safe."""
    if secret.strip().lower() in PLACEHOLDER_SECRETS:
        return [
            "the signing secret is a placeholder from the examples: anyone could forge "
            "unsubscribe links; set DIGEST_SECRET to the output of "
            '`python3 -c "import secrets; print(secrets.token_urlsafe(32))"`'
        ]
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        return [
            f"the signing secret is shorter than {MIN_SECRET_BYTES} bytes: use a long random one, "
            'e.g. from `python3 -c "import secrets; print(secrets.token_urlsafe(32))"`'
        ]
    return []


def listening_warnings(config: Config, host: str, port: int) -> list[str]:
    """Whether the links in emails and pages (newsletter.public_url, or unsubscribe_url's
    address) reach `digest serve` listening on host:port; a warning when their port differs,
    since a reader would then click into nothing, unless a reverse proxy forwards them."""
    from urllib.parse import urlsplit

    if config.public_url is None:
        return []
    parts = urlsplit(config.public_url)
    try:
        linked = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return []
    if linked == port:
        return []
    shown = f"[{host}]" if ":" in host else host
    return [
        f"links point to {config.public_url} (port {linked}) but digest serve listens on"
        f" {shown}:{port}; fine behind a reverse proxy that forwards {config.public_url} here,"
        f" otherwise run `digest serve --port {linked}` or set newsletter.public_url"
    ]


def local_link_warnings(config: Config) -> list[str]:
    """`digest check`'s half of listening_warnings: links to this machine (localhost) on a
    port other than the one `digest serve` listens on by default."""
    from urllib.parse import urlsplit

    if config.public_url is None or urlsplit(config.public_url).hostname not in _LOOPBACK:
        return []
    return [
        warning.replace("digest serve listens", "digest serve listens by default")
        for warning in listening_warnings(config, SERVE_HOST, SERVE_PORT)
    ]


def unsubscribe_warnings(config: Config) -> list[str]:
    """One-click unsubscribe needs an https URL that `digest serve` answers (RFC 8058)."""
    url = config.newsletter.unsubscribe_url
    if not url:
        return [
            "newsletter.unsubscribe_url is not set: messages offer only a mailto: unsubscribe,"
            " and Gmail and Yahoo expect one-click unsubscribe from bulk senders; run"
            " `digest serve` behind your web server and set the URL"
        ]
    if not url.lower().startswith("https://"):
        return [
            f"newsletter.unsubscribe_url should be https (one-click needs it): {redact_url(url)}"
        ]
    return []


def header_errors(config: Config) -> list[str]:
    """Header values the config model cannot see: the optional smtp.return_path."""
    return_path = getattr(config.smtp, "return_path", None)
    if not isinstance(return_path, str):
        return []
    try:
        headervalues.mailbox(return_path.replace("{token}", "token"), allow_name=False)
    except ValueError as error:
        return [f"{config.source}: smtp.return_path: {error}"]
    return []


def bounce_mailbox_warnings(config: Config) -> list[str]:
    """A configured bounce mailbox that cannot be read: bounces would pile up unnoticed.
    The one check that talks to a server (the IMAP server named in bounces.imap)."""
    from digest.bounces.mailbox import MailboxError, check_imap

    settings = config.bounces
    if settings.imap is not None:
        try:
            ca_file = settings.imap.ca_file
            check_imap(settings.imap, config.resolve(ca_file) if ca_file else None)
        except MailboxError as error:
            return [f"the bounce mailbox is unreachable: {error}"]
    elif settings.maildir is not None:
        path = config.resolve(settings.maildir)
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            return [f"bounces.maildir: {path} is not a Maildir (no cur/ and new/)"]
    if settings.mailbox_configured and not config.smtp.return_path:
        return [
            "bounces are read from a mailbox but smtp.return_path is not set: bounces go to"
            " newsletter.from instead; point smtp.return_path at the bounce mailbox"
        ]
    return []


def bounce_attribution_warnings(config: Config) -> list[str]:
    """What the address fallback allows, when bounces are read and it is on: without {token} in
    smtp.return_path, a report with no Message-ID of digest's is tied by the address it names."""
    return_path = config.smtp.return_path or ""
    if "{token}" in return_path or not config.bounces.match_recent_deliveries:
        return []
    if not (config.bounces.mailbox_configured or return_path):
        return []  # no sign that bounces are read at all
    return [
        "smtp.return_path carries no {token}: a bounce report without a Message-ID of"
        " digest's is tied to a delivery by the address it names alone, so anyone who can"
        " send mail to the bounce mailbox can suppress a reader digest mailed in the last 14"
        " days; put {token} in smtp.return_path (e.g. bounces+{token}@example.org), or set"
        " bounces.match_recent_deliveries: false to tie reports by token and Message-ID only"
    ]


def deliverability_warnings(config: Config) -> list[str]:
    """The latest issue's complaint or hard-bounce rate over `reports.max_complaint_rate` or
    `reports.max_hard_bounce_rate`, in plain words with what to do (digest.reports.health)."""
    from digest.reports.gather import latest_warnings

    return [f"{found.text} {found.advice}" for found in latest_warnings(config)]


def dkim_errors(config: Config) -> list[str]:
    """A DKIM key that cannot sign, said without quoting any of the key file."""
    from digest.mail.message import load_dkim

    if config.smtp.dkim is None:
        return []
    try:
        load_dkim(config)
    except ConfigError:
        path = config.resolve(config.smtp.dkim.key_file)
        return [
            f"{config.source}: smtp.dkim.key_file: {path} cannot be read or is not a usable"
            " private key; give an RSA private key in PEM format"
        ]
    return []


def signing_secret_in_use(config: Config, environ: Mapping[str, str]) -> str | None:
    """The secret set by the operator (DIGEST_SECRET, else config's `secret`), if any.

    Without one, the first send generates a random one in the state file, which is safe.
    """
    return environ.get(SECRET_ENVIRONMENT_VARIABLE) or config.secret or None


def check_project(config: Config, environ: Mapping[str, str]) -> CheckReport:
    """Everything `digest check` says about a config, without touching the network."""
    from digest.issue.samples import check_templates
    from digest.readers.subscribers import load_subscribers

    subscriber_list = load_subscribers(config.subscribers_path)
    warnings = check_templates(config)
    errors = [
        f"{config.source}: feed {feed.name!r}: no file at {feed.url}; fix its url in config.yaml"
        for feed in config.feeds
        if not feed.is_remote and not config.resolve(feed.url).is_file()
    ]
    errors.extend(header_errors(config))
    errors.extend(dkim_errors(config))
    with store.open(config, read_only=True) as state:
        for feed in config.feeds:
            record = state.feeds.feed(feed.url)
            if record is None:
                continue
            advice = feed_advice(
                permanent_url=record.permanent_url,
                gone=record.gone,
                error=record.last_error if record.failures else None,
                failures=record.failures,
                first_failure_at=record.first_failure_at,
            )
            warnings.extend(f"feed {feed.name!r}: {phrase}" for phrase in advice)
    warnings.extend(unsubscribe_warnings(config))
    warnings.extend(local_link_warnings(config))
    warnings.extend(bounce_attribution_warnings(config))
    warnings.extend(deliverability_warnings(config))
    secret = signing_secret_in_use(config, environ)
    if secret is not None:
        warnings.extend(secret_warnings(secret))
    warnings.extend(f"invalid subscriber skipped: {row}" for row in subscriber_list.invalid)
    warnings.extend(f"duplicate subscriber ignored: {row}" for row in subscriber_list.duplicates)
    return CheckReport(
        source=config.source,
        errors=tuple(errors),
        warnings=tuple(warnings),
        feeds=len(config.feeds),
        subscribers=len(subscriber_list.subscribers),
    )


def feed_health(config: Config, now: datetime) -> list[FeedHealth]:
    """Fetch every feed now and say what to do about each (`digest check --feeds`)."""
    from digest.feeds.collect import check_feeds

    with store.open(config, read_only=True) as state:
        records = {feed.url: state.feeds.feed(feed.url) for feed in config.feeds}
    return check_feeds(config.feeds, config.fetch, config.base_dir, records, now)


def health_problems(config: Config, now: datetime) -> tuple[str, ...]:
    """What `digest check --health` reports, one line each, read without changing the state:
    the last schedule slot missed, feeds failing for `health.feed_failing_days`, the last
    issue's complaint or hard-bounce rate over its limit, an outbox entry waiting longer than
    `health.outbox_stuck_after`, and (with `backup:`) no scheduled backup newer than
    `backup.every` plus BACKUP_MARGIN. None means healthy."""
    problems: list[str] = []
    with store.open(config, read_only=True) as state:
        if config.schedule is not None:
            latest = state.ledger.latest_slot_key()
            problems.extend(_missed_slot(config.schedule, now, latest, state.ledger.slot_handled))
        for feed in config.feeds:
            record = state.feeds.feed(feed.url)
            if record is None or not record.failures or record.first_failure_at is None:
                continue
            failing = now - record.first_failure_at
            if failing >= timedelta(days=config.health.feed_failing_days):
                problems.append(
                    f"feed {feed.name!r} has failed for {failing.days} days"
                    f" ({record.failures} fetches): {record.last_error or 'no reply'}"
                )
        issues = [row for row in state.ledger.history(10) if row.sent]
        bounced = state.bounces.by_issue()
        oldest = state.outbox.oldest_queued()
        waiting = len(state.outbox.waiting()) if oldest is not None else 0
    if issues:
        problems.extend(_rate_problems(config, issues[0], bounced))
    problems.extend(_outbox_problems(config, now, oldest, waiting))
    problems.extend(_backup_problems(config, now))
    return tuple(problems)


def _outbox_problems(
    config: Config, now: datetime, oldest: datetime | None, waiting: int
) -> list[str]:
    """The oldest outbox entry queued longer ago than health.outbox_stuck_after: confirmation
    or welcome emails are not going out (no process drains the outbox, or the SMTP server keeps
    refusing them), so people who sign up wait for nothing."""
    limit = timedelta(seconds=config.health.outbox_stuck_after)
    if oldest is None or now - oldest < limit:
        return []
    return [
        f"outbox stuck: its oldest email has waited {_whole(now - oldest)} ({waiting} waiting),"
        f" over health.outbox_stuck_after ({_whole(limit)}); is `digest serve` or `digest run`"
        " running, and does the SMTP server accept their mail?"
    ]


def _backup_problems(config: Config, now: datetime) -> list[str]:
    """With `backup:` configured, the newest scheduled backup in backup.to older than
    backup.every plus BACKUP_MARGIN, or none at all: `digest run` is not taking them."""
    from digest.store.backup import scheduled_times

    settings = config.backup
    if settings is None:
        return []
    folder = config.resolve(settings.to)
    try:
        names = [path.name for path in folder.iterdir()]
    except FileNotFoundError:
        names = []
    except OSError as error:
        return [f"backup.to: cannot read {folder}: {error.strerror}"]
    every = timedelta(seconds=settings.every)
    newest = max(scheduled_times(names).values(), default=None)
    if newest is None:
        return [
            f"no scheduled backup in {folder}: `digest run` takes one every {_whole(every)};"
            " is it running, and does its log say why not?"
        ]
    age = now - newest
    if age <= every + BACKUP_MARGIN:
        return []
    return [
        f"backup overdue: the newest in {folder} is {_whole(age)} old, over backup.every"
        f" ({_whole(every)}) plus {_whole(BACKUP_MARGIN)}; is `digest run` running, and does"
        " its log say why not?"
    ]


def _missed_slot(
    schedule: ScheduleConfig, now: datetime, latest: str | None, handled: Callable[[str], bool]
) -> list[str]:
    """The latest slot due more than its grace ago, if it has neither an issue nor a skip and
    came after the newest slot recorded. Before the scheduler has recorded any slot (a new
    newsletter, or one sent by hand only), no slot counts as missed, as `digest run` sees it."""
    from digest.run.slots import previous_slot, slot_key

    grace = timedelta(seconds=schedule.grace)
    slot = previous_slot(schedule, now - grace)
    if slot is None or latest is None:
        return []
    key = slot_key(slot)
    if key <= latest or handled(key):
        return []
    late = now.astimezone(UTC) - slot.astimezone(UTC)
    return [
        f"slot {slot.isoformat()} missed: no issue and no skip recorded"
        f" {_whole(late)} after it (grace {_whole(grace)}); is `digest run` running?"
    ]


def _rate_problems(
    config: Config, last: store.IssueSummary, bounced: Mapping[int, IssueBounces]
) -> list[str]:
    counted = bounced.get(last.issue.id)
    if counted is None:
        return []
    problems = []
    for kind, count, limit in (
        ("complaint", counted.complaints, config.health.complaint_rate),
        ("hard-bounce", counted.hard, config.health.hard_bounce_rate),
    ):
        rate = 100 * count / last.sent
        if rate > limit:
            problems.append(
                f"issue {last.issue.id}: {kind} rate {rate:.2f}% ({count} of {last.sent}"
                f" delivered) is over health.{kind.replace('-', '_')}_rate ({limit:g}%)"
            )
    return problems


def _whole(delta: timedelta) -> timedelta:
    return timedelta(seconds=int(delta.total_seconds()))
