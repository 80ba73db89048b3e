"""Load config.yaml into a validated, typed Config; every error names file, line and key."""

from __future__ import annotations

import calendar
import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from digest import __version__
from digest.config.fields import Section, SettingsError, dotted, setting, validate
from digest.config.yamlfile import load_yaml
from digest.core import headervalues
from digest.core.cron import parse_cron
from digest.core.errors import ConfigError
from digest.core.redact import redact_text, redact_url
from digest.store import DEFAULT_STATE
from digest.store.location import DatabaseURL, StateLocation, database_url, is_database_url

DEFAULT_USER_AGENT = f"digest/{__version__} (+https://github.com/digest-newsletter/digest)"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_PERIOD_PATTERN = re.compile(r"^\s*(\d+)\s*(day|week|month|year)s?\s*$", re.IGNORECASE)
_LISTEN_PATTERN = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$", re.ASCII)
FOREVER = "forever"
SHORTEST_RETENTION_DAYS = 31  # bounces and complaints arrive for weeks; they need the delivery


# -- checks of single values, used by the sections below; each raises ValueError to refuse --


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _http_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"expected an http(s) URL, got {redact_url(value)!r}")
    return value


def _has_token(value: str | None) -> str | None:
    if value is not None and "{token}" not in value:
        raise ValueError(
            f"must contain {{token}} where the subscriber's token goes: {redact_url(value)!r}"
        )
    return headervalues.header_url(value) if value is not None else None


def _named_mailbox(value: str | None) -> str | None:
    return headervalues.mailbox(value, allow_name=True) if value is not None else None


def _bare_mailbox(value: str | None) -> str | None:
    return headervalues.mailbox(value, allow_name=False) if value is not None else None


def _header_text(value: str | None) -> str | None:
    return headervalues.header_text(value) if value is not None else None


def parse_listen(value: str) -> tuple[str, int]:
    """(host, port) from 'host:port' or '[IPv6]:port', as `metrics.listen` takes it
    (ValueError saying what is expected otherwise)."""
    match = _LISTEN_PATTERN.match(value.strip())
    port = int(match.group(3)) if match else 0
    if match is None or not 1 <= port <= 65535:
        raise ValueError(
            "expected host:port such as 127.0.0.1:9464 (an IPv6 address in brackets,"
            f" [::1]:9464; the port 1-65535), got {value!r}"
        )
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(match.group(1))
        except ValueError:
            raise ValueError(f"{match.group(1)!r} is not an IPv6 address") from None
        return match.group(1), port
    return match.group(2), port


def _listen(value: str) -> str:
    parse_listen(value)
    return value.strip()


def _hex(value: str) -> str:
    if not _HEX_COLOUR.match(value):
        raise ValueError(f"expected a six-digit hex colour like '#1d4f91', got {value!r}")
    return value.lower()


def _feed_url(value: str) -> str:
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https", "") or (len(scheme) == 1 and value[1:2] == ":"):
        return value
    raise ValueError(f"expected an http(s) URL or a file path, got scheme '{scheme}:'")


def _patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            message = f"{pattern!r} is not a valid regular expression: {error}"
            raise ValueError(message) from None
    return patterns


def _return_path(value: str | None) -> str | None:
    if value is None:
        return None
    checked = headervalues.mailbox(value.replace("{token}", "token"), allow_name=False)
    if value.count("{token}") > 1 or "{token}" in checked.rsplit("@", 1)[-1]:
        raise ValueError("{token} may appear once, in the part before the @")
    local = value.rsplit("@", 1)[0]
    if len(local.replace("{token}", "x" * 24)) > 64:
        raise ValueError("the part before the @ is too long for a token (64 characters)")
    return value


def _weekday(value: str | None) -> str | None:
    if value is not None and value.strip().lower() not in WEEKDAYS:
        raise ValueError(f"expected a weekday name such as 'monday', got {value!r}")
    return value.strip().lower() if value else value


def _clock(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", value.strip()):
        raise ValueError(f'expected a time like "08:00", got {value!r}')
    return value.strip() if value else value


def _cron(value: str | None) -> str | None:
    if value is not None:
        parse_cron(value)
    return value.strip() if value else value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"expected an IANA time zone such as 'Europe/London', got {value!r}"
        raise ValueError(message) from None
    return value


def _host_names(values: list[str]) -> list[str]:
    names = []
    for value in values:
        name = value.strip().lower()
        try:
            names.append(str(ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))))
            continue
        except ValueError:
            pass
        if ":" in name or "/" in name:
            raise ValueError(
                f"expected a host name such as editor.example.org, without scheme, port or"
                f" path; got {value!r}"
            )
        name = name.removesuffix(".")
        if not name.isascii():
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"{value!r} is not a host name") from None
        names.append(headervalues.dns_name(name))
    return names


def _subscribe_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("http", "https", "mailto"):
        raise ValueError(f"expected an http(s) or mailto: URL, got {redact_url(value)!r}")
    return value


# -- the sections of config.yaml -------------------------------------------------------------


class NewsletterConfig(Section):
    """Who the newsletter is from and how it introduces itself."""

    title: str = setting(
        description="The newsletter's name, shown in the subject and heading.",
        after=(_header_text,),
    )
    from_address: str = setting(
        key="from",
        description='Sender, e.g. "Org <digest@example.org>".',
        after=(_named_mailbox,),
    )
    reply_to: str | None = setting(
        default=None, description="Where replies go, if not the sender.", after=(_named_mailbox,)
    )
    subject: str | None = setting(
        default=None,
        description="Subject template; variables: title, date, count. "
        "Default: '{title}: {count} new posts, {date}'.",
        after=(_header_text,),
    )
    intro: str | None = setting(
        default=None, description="A Markdown paragraph at the top of every issue."
    )
    unsubscribe_url: str | None = setting(
        default=None,
        description="One-click unsubscribe URL with {token}, served by `digest serve`.",
        after=(_http_url, _has_token),
    )
    unsubscribe_mailto: str | None = setting(
        default=None,
        description="Address for mailto: unsubscribe requests; default: the sender.",
        after=(_bare_mailbox,),
    )
    archive_url: str | None = setting(
        default=None,
        description='Web copy of the issue ("view in browser"); with the archive on, its address.',
        after=(_http_url,),
    )
    logo_url: str | None = setting(
        default=None, description="Absolute https URL of a logo image.", after=(_http_url,)
    )
    logo_width: int = setting(default=160, ge=16, le=600, description="Logo width in pixels.")
    logo_height: int = setting(default=40, ge=16, le=400, description="Logo height in pixels.")
    footer: str | None = setting(
        default=None, description="Footer text: why the reader gets this email."
    )
    address: str | None = setting(default=None, description="Postal address shown in the footer.")
    date_format: str = setting(
        default="%-d %B %Y",
        description="strftime format for dates in the email.",
        after=(_header_text,),
    )
    language: str = setting(default="en-GB", description="The email's language tag (html lang).")
    choosable_sections: bool = setting(
        default=False,
        description="Let subscribers choose their sections on sign-up and preferences pages.",
    )
    public_url: str | None = setting(
        default=None,
        description="Public app base URL for sign-up and preferences; default: unsubscribe_url's.",
        after=(_http_url,),
    )


class ThemeConfig(Section):
    """Branding applied by the default templates."""

    accent: str = setting(
        default="#1d4f91", description="Accent colour, six-digit hex.", after=(_hex,)
    )
    font: str = setting(
        default="Helvetica, Arial, sans-serif", description="CSS font stack for all text cells."
    )


class FeedConfig(Section):
    """One feed: a section of the newsletter."""

    name: str = setting(description="The section heading.")
    url: str = setting(
        description="http(s) URL, or a file path relative to config.yaml.", after=(_feed_url,)
    )
    section: str | None = setting(
        default=None, description="Merge into this heading instead of `name`."
    )
    max_posts: int | None = setting(
        default=None, ge=1, description="At most this many posts from this feed."
    )
    include: list[str] = setting(
        default_factory=list,
        description="Keep only posts matching one of these words or regexes.",
        after=(_patterns,),
    )
    exclude: list[str] = setting(
        default_factory=list,
        description="Drop posts matching any of these words or regexes.",
        after=(_patterns,),
    )

    @property
    def heading(self) -> str:
        """The section this feed's posts appear under."""
        return self.section or self.name

    @property
    def is_remote(self) -> bool:
        """Whether the feed is fetched over HTTP rather than read from disk."""
        return urlsplit(self.url).scheme.lower() in ("http", "https")


class DigestOptions(Section):
    """What makes a post new and how many go in an issue."""

    max_posts_per_section: int = setting(default=10, ge=1, description="Cap on posts per section.")
    lookback_days: int = setting(
        default=14, ge=1, description="Posts older than this are never new."
    )
    skip_if_empty: bool = setting(
        default=True, description="Send nothing when there are no new posts."
    )
    min_posts: int = setting(
        default=1,
        ge=1,
        description="Fewer new posts than this: the slot is skipped; they roll over to the next.",
    )


class SignupConfig(Section):
    """Readers subscribing themselves through `digest serve`: double opt-in, limits, consent."""

    enabled: bool = setting(
        default=False, description="Serve /subscribe, /confirm and /preferences."
    )
    consent_text: str = setting(
        default="Send me the newsletter by email. I can unsubscribe at any time.",
        description="Consent sentence on the form; its SHA-256 is kept with each sign-up.",
    )
    privacy_url: str | None = setting(
        default=None,
        description="http(s) URL of the privacy notice the sign-up pages link to.",
        after=(_http_url,),
    )
    confirm_within: float = setting(
        default=7 * 86400,
        gt=0,
        description="How long a confirmation link works, e.g. '7d'.",
        before=_duration,
    )
    preferences_valid_for: float = setting(
        default=180 * 86400,
        gt=0,
        description="How long a preferences link in a message works.",
        before=_duration,
    )
    welcome: bool = setting(default=True, description="Send a welcome email after confirming.")
    per_address_every: float = setting(
        default=600,
        ge=0,
        description="At most one confirmation email per address this often.",
        before=_duration,
    )
    per_address_per_day: int = setting(
        default=3, ge=1, description="At most this many confirmation emails per address a day."
    )
    per_ip_per_hour: int = setting(
        default=20, ge=1, description="At most this many sign-ups from one IP address an hour."
    )
    keep_ip: Literal["full", "truncated", "none"] = setting(
        default="truncated",
        description="Sign-up IP kept as consent evidence: full, truncated (/24, /48) or none.",
    )
    empty_choice: Literal["skip", "send_all"] = setting(
        default="skip",
        description="When chosen sections have nothing new: skip, or send_all (whole issue).",
    )
    send_lease: float = setting(
        default=300,
        ge=1,
        description="How long a process may take to send a sign-up email before another does.",
        before=_duration,
    )


class DkimConfig(Section):
    """DKIM signing of outgoing mail."""

    selector: str = setting(
        description="DNS selector, e.g. 'digest'.", after=(headervalues.dns_name,)
    )
    domain: str = setting(
        description="Signing domain, e.g. 'example.org'.", after=(headervalues.dns_name,)
    )
    key_file: str = setting(description="PEM private key, relative to config.yaml.")


class SmtpConfig(Section):
    """The mail server digest hands messages to."""

    host: str = setting(default="localhost", description="SMTP server host name.")
    port: int = setting(default=587, ge=1, le=65535, description="SMTP port.")
    security: Literal["starttls", "ssl", "none"] = setting(
        default="starttls", description="starttls | ssl | none."
    )
    username: str | None = setting(
        default=None, description="AUTH user name, if the server needs one."
    )
    password: str | None = setting(default=None, description="AUTH password; use ${SMTP_PASSWORD}.")
    timeout: float = setting(default=30, gt=0, description="Seconds to wait for the server.")
    retries: int = setting(default=3, ge=0, description="Retries for a temporary (4xx) failure.")
    retry_delay: float = setting(
        default=2.0, ge=0, description="Seconds before the first retry; doubles."
    )
    connections: int = setting(
        default=8,
        ge=1,
        le=32,
        description="Connections used in parallel (fewer if the server refuses more).",
    )
    max_per_second: float | None = setting(
        default=None,
        gt=0,
        description="Optional rate cap: messages a second from each sending process.",
    )
    batch: int = setting(
        default=500,
        ge=1,
        le=10000,
        description="Deliveries a sender claims at a time; several senders share one issue.",
    )
    lease: float = setting(
        default=300,
        ge=1,
        le=86400,
        description="Seconds a claimed batch stays a sender's before another may take it over.",
    )
    dkim: DkimConfig | None = setting(default=None, description="Sign messages with DKIM.")
    return_path: str | None = setting(
        default=None,
        description="Envelope sender for bounces; bounces+{token}@example.org names each delivery.",
        after=(_return_path,),
    )


class FetchConfig(Section):
    """How feeds are fetched."""

    timeout: float = setting(
        default=15,
        gt=0,
        description="Seconds for each feed's whole request: connecting, headers, body, redirects.",
    )
    max_bytes: int = setting(
        default=10_000_000,
        ge=1024,
        description="Largest feed body accepted, both as sent and once decompressed.",
    )
    concurrency: int = setting(
        default=32, ge=1, le=64, description="Feeds fetched at once, in all."
    )
    per_host: int = setting(
        default=3, ge=1, le=16, description="Feeds fetched at once from any one host (politeness)."
    )
    user_agent: str = setting(
        default=DEFAULT_USER_AGENT,
        description="User-Agent header sent to servers.",
        after=(headervalues.printable_ascii,),
    )


class ApprovalConfig(Section):
    """An approver's yes before each scheduled send (`digest run` only)."""

    required: bool = setting(
        default=False, description="Send a scheduled issue only once it is approved."
    )
    before: float = setting(
        default=2 * 3600,
        gt=0,
        description="How long before the slot the draft goes to the approvers, e.g. 2h.",
        before=_duration,
    )
    approvers: list[str] = setting(
        default_factory=list,
        description="Addresses that get the draft with Approve and Hold links.",
    )
    on_timeout: Literal["hold", "send"] = setting(
        default="hold", description="No answer by the slot: hold (approvers told) or send."
    )

    def check(self) -> None:
        """Approval needs someone to approve."""
        if self.required and not self.approvers:
            raise ValueError("approval.required needs at least one address in approvers")


class ScheduleConfig(Section):
    """When `digest run` sends: day + time, or a cron expression."""

    day: str | None = setting(
        default=None, description="Weekday name, with `time`.", after=(_weekday,)
    )
    time: str | None = setting(
        default=None, description='Time of day "HH:MM", with `day`.', after=(_clock,)
    )
    cron: str | None = setting(
        default=None, description="Standard 5-field cron expression instead.", after=(_cron,)
    )
    timezone: str = setting(
        default="UTC", description="IANA time zone, e.g. Europe/London.", after=(_zone,)
    )
    grace: float = setting(
        default=6 * 3600,
        ge=0,
        description="How late a slot may still go out: caught up on start-up, retried on failure.",
        before=_duration,
    )
    retry_every: float = setting(
        default=15 * 60,
        gt=0,
        description="How often `digest run` retries a slot that failed or left messages pending.",
        before=_duration,
    )
    approval: ApprovalConfig = setting(default_factory=ApprovalConfig)

    def check(self) -> None:
        """Exactly one way of saying when: cron, or day and time."""
        if self.cron and (self.day or self.time):
            raise ValueError("give either cron or day + time, not both")
        if not self.cron and not (self.day and self.time):
            raise ValueError('give day and time (e.g. day: monday, time: "08:00") or cron')


class ArchiveConfig(Section):
    """The public web archive of sent issues: pages, an index and an Atom feed."""

    enabled: bool = setting(
        default=False,
        description="Publish every sent issue at newsletter.archive_url/issues/NUMBER-SLUG/.",
    )
    out_dir: str | None = setting(
        default=None,
        description="Folder the static archive is rewritten into after each real send.",
    )
    per_page: int = setting(default=20, ge=1, le=500, description="Issues per archive index page.")
    subscribe_url: str | None = setting(
        default=None,
        description="Where the archive's Subscribe links go; default: /subscribe, else a mailto:.",
        after=(_subscribe_url,),
    )


class WorkbenchConfig(Section):
    """The editor's workbench: `digest serve`'s live preview, on its own port."""

    hosts: list[str] = setting(
        default_factory=list,
        description="Names it answers to besides localhost and loopback; any other Host: 421.",
        after=(_host_names,),
    )


class ImapConfig(Section):
    """The mailbox bounce and complaint reports arrive in, read over IMAP."""

    host: str = setting(description="IMAP server host name.")
    port: int = setting(
        default=993, ge=1, le=65535, description="IMAP port (993 with TLS, else 143)."
    )
    tls: bool = setting(default=True, description="Connect with TLS (IMAPS).")
    ca_file: str | None = setting(
        default=None,
        description="PEM of a private CA or self-signed cert to trust, relative to config.yaml.",
    )
    username: str = setting(description="IMAP user name.")
    password: str = setting(description="IMAP password; use ${BOUNCES_IMAP_PASSWORD}.")
    folder: str = setting(default="INBOX", description="Folder the reports arrive in.")
    processed_folder: str = setting(
        default="digest-processed",
        description="Folder processed reports are moved to (never deleted).",
    )
    timeout: float = setting(default=30, gt=0, description="Seconds to wait for the server.")


class WebhookConfig(Section):
    """Bounce and complaint events posted by an email service provider to `digest serve`."""

    mailgun_signing_key: str | None = setting(
        default=None, description="Mailgun's HTTP webhook signing key; use ${MAILGUN_SIGNING_KEY}."
    )
    sendgrid_public_key: str | None = setting(
        default=None, description="SendGrid's signed event webhook verification key (base64)."
    )
    postmark_username: str | None = setting(
        default=None, description="Basic auth user for Postmark."
    )
    postmark_password: str | None = setting(
        default=None,
        description="Basic auth password for Postmark; use ${POSTMARK_WEBHOOK_PASSWORD}.",
    )
    max_age: float = setting(
        default=300,
        gt=0,
        description="Oldest signed timestamp accepted, in seconds (replay window).",
    )


class BouncesConfig(Section):
    """Bounces and complaints: where reports arrive and when an address is suppressed."""

    imap: ImapConfig | None = setting(
        default=None, description="Read reports from this IMAP mailbox."
    )
    maildir: str | None = setting(
        default=None, description="Or from this Maildir, relative to config.yaml."
    )
    poll_every: float = setting(
        default=15 * 60,
        gt=0,
        description="How often `digest run` reads the mailbox, e.g. '15m'.",
        before=_duration,
    )
    soft_limit: int = setting(
        default=3,
        ge=1,
        description="Soft bounces on distinct issues, none delivered between, to suppress.",
    )
    match_recent_deliveries: bool = setting(
        default=True,
        description="Match a report without digest's token or Message-ID to a recent delivery.",
    )
    webhooks: WebhookConfig = setting(
        default_factory=WebhookConfig, description="ESP webhooks on the public app."
    )

    @property
    def mailbox_configured(self) -> bool:
        """Whether digest has a mailbox to read reports from."""
        return self.imap is not None or self.maildir is not None


class HealthConfig(Section):
    """What `digest check --health` reports as a problem, for cron or a monitoring system."""

    feed_failing_days: float = setting(
        default=7,
        gt=0,
        description="A feed failing for this many days in a row is a problem.",
    )
    complaint_rate: float = setting(
        default=0.3,
        ge=0,
        le=100,
        description="Most complaints per 100 messages the last issue delivered (Gmail: 0.3).",
    )
    hard_bounce_rate: float = setting(
        default=2.0,
        ge=0,
        le=100,
        description="Most hard bounces per 100 messages the last issue delivered.",
    )
    outbox_stuck_after: float = setting(
        default=3600,
        gt=0,
        description="An email waiting in the outbox this long after it was queued is a problem.",
        before=_duration,
    )


class MetricsConfig(Section):
    """Prometheus metrics from `digest run` and `digest serve` (operator's guide: Monitoring)."""

    listen: str = setting(
        description="host:port serving them, e.g. 127.0.0.1:9464; never the public app's port.",
        after=(_listen,),
    )


def _retention_period(value: str) -> str:
    """`forever`, or a whole number of days, weeks, months or years of at least a month, as
    '13 months' or '400 days' (ValueError otherwise); given back as written, trimmed."""
    if value.strip().lower() == FOREVER:
        return FOREVER
    match = _PERIOD_PATTERN.match(value)
    if not match:
        raise ValueError(
            f"expected a period like '13 months', '2 years', '400 days' or 'forever', got {value!r}"
        )
    number, unit = int(match.group(1)), match.group(2).lower()
    days = number * {"day": 1, "week": 7, "month": 31, "year": 366}[unit]
    if days < SHORTEST_RETENTION_DAYS:
        raise ValueError(
            f"{value.strip()!r} is too short: keep deliveries at least a month (31 days), so a"
            " bounce or complaint arriving weeks later still finds the delivery it is about"
        )
    return f"{number} {unit}{'s' if number != 1 else ''}"


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier, on the month's last day when it
    has fewer days (31 March less one month is 28 or 29 February)."""
    years, month_index = divmod(moment.month - 1 - months, 12)
    year, month = moment.year + years, month_index + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class RetentionConfig(Section):
    """How long the state keeps who was sent what (see the operator's guide, "Retention")."""

    deliveries: str = setting(
        default="13 months",
        description="Older deliveries become per-issue counts: 13 months, 2 years, forever.",
        after=(_retention_period,),
    )

    @property
    def forever(self) -> bool:
        """Whether compaction is off: every delivery is kept."""
        return self.deliveries == FOREVER

    def cutoff(self, now: datetime) -> datetime | None:
        """The oldest moment still inside the window at `now` (an issue created before it is
        compacted); None when deliveries are kept forever."""
        if self.forever:
            return None
        number, unit = self.deliveries.split()
        count = int(number)
        if unit.startswith("day"):
            return now - timedelta(days=count)
        if unit.startswith("week"):
            return now - timedelta(weeks=count)
        return months_before(now, count * (12 if unit.startswith("year") else 1))


class BackupConfig(Section):
    """Backups `digest run` takes of the state on a schedule (see the operator's guide, Backups)."""

    every: float = setting(
        default=86400,
        ge=3600,
        description="How often `digest run` takes a backup, e.g. '1d' or '12h' (at least 1h).",
        before=_duration,
    )
    keep: int = setting(
        default=14, ge=1, le=10_000, description="How many scheduled backups to keep; older go."
    )
    to: str = setting(
        description="Folder the backups are written to, relative to config.yaml; made 0700."
    )


def _clicks_mode(value: Any) -> Any:
    """`clicks: off` is read by YAML as false: it means "off", as written. `on` (true) is
    refused saying what to write instead."""
    if value is True:
        raise ValueError("expected off or aggregate, got on (write aggregate to count clicks)")
    return "off" if value is False else value


class TrackingConfig(Section):
    """Counting clicks on post links, per issue and link, never per reader (off by default)."""

    clicks: Literal["off", "aggregate"] = setting(
        default="off",
        description="off, or aggregate to count clicks on post links (per link, never per reader).",
        before=_clicks_mode,
    )
    scanner_seconds: float = setting(
        default=60,
        ge=0,
        le=86400,
        description="Clicks this close to a delivery of the issue count as scanners', e.g. 60s.",
        before=_duration,
    )

    @property
    def enabled(self) -> bool:
        """Whether post links are tracked."""
        return self.clicks == "aggregate"


def _percent(value: Any) -> Any:
    """A rate given as "0.1%" is the number 0.1 (percent); a bare number is percent already."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"expected a percentage such as 0.1%, got {value!r}") from None
    return value


def _report_addresses(value: list[str]) -> list[str]:
    """Each address in the canonical form; ValueError naming one that is not an address."""
    from digest.core.addresses import canonical_or_none

    found = []
    for text in value:
        address = canonical_or_none(text)
        if address is None:
            raise ValueError(f"not an email address: {text!r}")
        found.append(address)
    return found


class ReportsConfig(Section):
    """Per-issue reports and deliverability health (see the guide, "Reports")."""

    max_complaint_rate: float = setting(
        default=0.1,
        ge=0,
        le=100,
        description="Complaints per delivered message above which an issue is unhealthy, e.g."
        " 0.1%.",
        before=_percent,
    )
    max_hard_bounce_rate: float = setting(
        default=2.0,
        ge=0,
        le=100,
        description="Hard bounces per delivered message above which an issue is unhealthy,"
        " e.g. 2%.",
        before=_percent,
    )
    email_to: list[str] = setting(
        default_factory=list,
        description="Addresses `digest run` emails each issue's report to; none: not emailed.",
        after=(_report_addresses,),
    )
    after: float = setting(
        default=72 * 3600,
        gt=0,
        description="How long after an issue is sent its report is emailed, e.g. 72h.",
        before=_duration,
    )


def _state_location(value: str) -> str:
    """`state:` is a path, or a PostgreSQL URL that names a database (ValueError otherwise,
    its password masked)."""
    if is_database_url(value):
        database_url(value)
    return value


class Config(Section):
    """The whole of config.yaml."""

    newsletter: NewsletterConfig = setting()
    theme: ThemeConfig = setting(default_factory=ThemeConfig)
    feeds: list[FeedConfig] = setting(min_length=1, description="One section each.")
    digest: DigestOptions = setting(default_factory=DigestOptions)
    subscribers: str = setting(
        default="subscribers.csv", description="CSV (email,name) or YAML list."
    )
    smtp: SmtpConfig = setting(default_factory=SmtpConfig)
    state: str = setting(
        default=DEFAULT_STATE,
        description="SQLite state file, or a PostgreSQL database's URL"
        " (postgresql://user@host:port/database).",
        after=(_state_location,),
    )
    outbox: str = setting(
        default="outbox", description="Folder for `digest send --dry-run` .eml files."
    )
    inliner: Literal["premailer", "css_inline"] = setting(
        default="premailer",
        description="CSS inliner: premailer, or css_inline (same output, much faster;"
        " pip install 'digest[fast]').",
    )
    fetch: FetchConfig = setting(default_factory=FetchConfig)
    secret: str | None = setting(
        default=None, description="Token signing secret; or DIGEST_SECRET."
    )
    schedule: ScheduleConfig | None = setting(default=None, description="When `digest run` sends.")
    signup: SignupConfig = setting(default_factory=SignupConfig)
    archive: ArchiveConfig = setting(default_factory=ArchiveConfig)
    workbench: WorkbenchConfig = setting(default_factory=WorkbenchConfig)
    bounces: BouncesConfig = setting(default_factory=BouncesConfig)
    health: HealthConfig = setting(default_factory=HealthConfig)
    retention: RetentionConfig = setting(default_factory=RetentionConfig)
    metrics: MetricsConfig | None = setting(
        default=None, description="Prometheus metrics from `digest run` and `digest serve`."
    )
    reports: ReportsConfig = setting(default_factory=ReportsConfig)
    backup: BackupConfig | None = setting(
        default=None, description="Backups of the state `digest run` takes on a schedule."
    )
    tracking: TrackingConfig = setting(default_factory=TrackingConfig)
    base_dir: Path = setting(
        default=Path("."), internal=True, description="Folder holding config.yaml."
    )
    source: str = setting(
        default="config.yaml", internal=True, description="The config file as named."
    )

    def check(self) -> None:
        """Approval, sign-up and click counts need the public app's address for their links."""
        if self.schedule and self.schedule.approval.required and self.public_url is None:
            raise ValueError(
                "schedule.approval.required needs newsletter.public_url (where `digest serve` is"
                " reached) for the Approve and Hold links"
            )
        if self.tracking.enabled and self.public_url is None:
            raise ValueError(
                "tracking.clicks: aggregate needs newsletter.public_url (where `digest serve` is"
                " reached, e.g. https://news.example.org) for the links' redirects"
            )
        if self.signup.enabled and self.public_url is None:
            raise ValueError(
                "signup.enabled needs newsletter.public_url (where `digest serve` is reached,"
                " e.g. https://news.example.org) for the links in confirmation emails"
            )

    def resolve(self, relative: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def state_path(self) -> StateLocation:
        """Where the state lives: a SQLite file (resolved against config.yaml's folder), or
        a PostgreSQL database when `state:` is a postgresql:// URL."""
        if is_database_url(self.state):
            return database_url(self.state)
        return self.resolve(self.state)

    @property
    def subscribers_path(self) -> Path:
        """Where the subscriber list lives."""
        return self.resolve(self.subscribers)

    @property
    def public_url(self) -> str | None:
        """The public app's base URL (no trailing slash): newsletter.public_url, else the
        scheme and host of unsubscribe_url; None when neither is set."""
        if self.newsletter.public_url:
            return self.newsletter.public_url.rstrip("/")
        if self.newsletter.unsubscribe_url:
            parts = urlsplit(self.newsletter.unsubscribe_url)
            return f"{parts.scheme}://{parts.netloc}"
        return None

    @property
    def templates_dir(self) -> Path:
        """The editor's template folder, beside config.yaml; overrides the bundled templates."""
        return self.base_dir / "templates"


def parse_duration(text: str) -> float:
    """Seconds in a duration such as '6h', '90m', '30s' or '2d'."""
    match = _DURATION_PATTERN.match(text)
    if not match:
        raise ValueError(f"expected a duration like '6h', '30m' or '1d', got {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _key_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _key_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _key_lines(item, (*path, index), lines)


@dataclass
class _Expansion:
    """Where ${VAR} was expanded: per key path, the text as written and what it became."""

    written: dict[tuple[Any, ...], tuple[str, str]] = field(default_factory=dict)
    values: set[str] = field(default_factory=set)

    def hide(self, message: str, path: tuple[Any, ...]) -> str:
        """`message` about `path` with every value expanded at or below it shown as written."""
        for where, (written, expanded) in self.written.items():
            if where[: len(path)] == path and expanded:
                message = message.replace(repr(expanded), written)
                if len(expanded) >= _MASKED_LENGTH:  # shorter ones would garble the sentence
                    message = message.replace(expanded, written)
        return message


def _expand_env(
    value: Any, path: tuple[Any, ...], environ: dict[str, str], expansion: _Expansion
) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*path, k), environ, expansion) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*path, i), environ, expansion) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            expansion.values.add(environ[name])
            return environ[name]
        if default is not None:
            return default
        raise _EnvError(path, name)

    expanded = _ENV_PATTERN.sub(substitute, value)
    if expanded != value:
        expansion.written[path] = (value, expanded)
    return expanded


class _EnvError(Exception):
    def __init__(self, path: tuple[Any, ...], name: str) -> None:
        super().__init__(name)
        self.path = path
        self.name = name


MAX_REPORTED_ERRORS = 20


# Keys whose values are secrets: an error about them never shows what was given.
SECRET_KEYS = frozenset({("smtp", "password"), ("secret",)})
# Expanded ${VAR} values shorter than this are too common to mask everywhere in a message.
_MASKED_LENGTH = 6


def parse_config(text: str, source: str, base_dir: Path, environ: dict[str, str]) -> Config:
    """Validate config text; errors read `file:line: key: problem`.

    An error never shows a secret: values of smtp.password and secret are not echoed, a value
    that came from ${VAR} is named as `the value of ${VAR}`, and as a last guard every expanded
    environment value and every secret is masked in the message.
    """
    document = load_yaml(text, source)
    root, data = document.root, document.data
    if root is None or not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping of keys such as newsletter: and feeds:")
    lines: dict[tuple[Any, ...], int] = {}
    _key_lines(root, (), lines)

    def line_of(path: tuple[Any, ...]) -> int:
        while path and path not in lines:
            path = path[:-1]
        return lines.get(path, 1)

    expansion = _Expansion()
    try:
        data = _expand_env(data, (), environ, expansion)
    except _EnvError as error:
        raise ConfigError(
            f"{source}:{line_of(error.path)}: {dotted(error.path)}: environment variable "
            f"{error.name} is not set; set it, or write ${{{error.name}:-default}}"
        ) from None
    try:
        config = validate(Config, {**data, "base_dir": base_dir, "source": source})
    except SettingsError as error:
        # Every mistake at once, in file order, so the editor fixes them in one pass.
        problems: dict[tuple[int, str], str] = {}
        for found in error.problems[:MAX_REPORTED_ERRORS]:
            path = found.loc
            line, key = line_of(path), dotted(path)
            shown = None
            if path in SECRET_KEYS:
                shown = "a value (not shown: it is a secret)"
            elif path in expansion.written:
                shown = f"the value of {expansion.written[path][0]}"
            text = expansion.hide(found.text(shown), path)
            problems.setdefault((line, key), text)
        message = "\n".join(
            f"{source}:{line}: {key}: {text}" for (line, key), text in sorted(problems.items())
        )
        raise ConfigError(redact_text(message, _secrets(data, expansion))) from None
    problem = _archive_problem(config)
    if problem:
        raise ConfigError(f"{source}:{line_of(('archive', 'enabled'))}: archive.enabled: {problem}")
    return config


def _archive_problem(config: Config) -> str | None:
    """Why the archive cannot be published at newsletter.archive_url, if it cannot."""
    if not config.archive.enabled:
        return None
    if not config.newsletter.archive_url:
        return (
            "needs newsletter.archive_url: the address the archive is published at, e.g."
            " https://example.org/newsletter"
        )
    parts = urlsplit(config.newsletter.archive_url)
    if parts.query or parts.fragment or parts.path.lower().endswith((".html", ".htm")):
        return (
            "newsletter.archive_url must be the folder the archive is published at (issues go"
            " under it), not a page: e.g. https://example.org/newsletter"
        )
    return None


def _secrets(data: dict[str, Any], expansion: _Expansion) -> set[str]:
    """Values an error message must never contain."""
    found = {value for value in expansion.values if len(value) >= _MASKED_LENGTH}
    state = data.get("state")
    if isinstance(state, str) and is_database_url(state):
        found.add(DatabaseURL(state).password)
    smtp = data.get("smtp")
    for value in (data.get("secret"), smtp.get("password") if isinstance(smtp, dict) else None):
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            found.add(str(value))
    return found


MAX_CONFIG_BYTES = 1_000_000


def load_config(path: Path | str, environ: dict[str, str] | None = None) -> Config:
    """Read and validate a config file (UTF-8, at most MAX_CONFIG_BYTES)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; create one with `digest init` or pass --config"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES // 1_000_000} MB; is this the config file?"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        ) from None
    env = dict(os.environ) if environ is None else environ
    return parse_config(text, str(path), path.resolve().parent, env)
