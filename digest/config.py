"""Load config.yaml into a validated, typed Config; every error names file, line and key."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from digest import __version__, headervalues
from digest.cron import parse_cron
from digest.errors import ConfigError
from digest.redact import redact_text, redact_url
from digest.yamlfile import load_yaml

DEFAULT_USER_AGENT = f"digest/{__version__} (+https://github.com/digest-newsletter/digest)"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NewsletterConfig(_Strict):
    """Who the newsletter is from and how it introduces itself."""

    title: str = Field(description="The newsletter's name, shown in the subject and heading.")
    from_address: str = Field(alias="from", description='Sender, e.g. "Org <digest@example.org>".')
    reply_to: str | None = Field(None, description="Where replies go, if not the sender.")
    subject: str | None = Field(
        None,
        description="Subject template; variables: title, date, count. "
        "Default: '{title}: {count} new posts, {date}'.",
    )
    intro: str | None = Field(None, description="A Markdown paragraph at the top of every issue.")
    unsubscribe_url: str | None = Field(
        None, description="One-click unsubscribe URL with {token}, served by `digest serve`."
    )
    unsubscribe_mailto: str | None = Field(
        None, description="Address for mailto: unsubscribe requests; default: the sender."
    )
    archive_url: str | None = Field(
        None,
        description='Web copy of the issue ("view in browser"); with the archive on, its address.',
    )
    logo_url: str | None = Field(None, description="Absolute https URL of a logo image.")
    logo_width: int = Field(160, ge=16, le=600, description="Logo width in pixels.")
    logo_height: int = Field(40, ge=16, le=400, description="Logo height in pixels.")
    footer: str | None = Field(None, description="Footer text: why the reader gets this email.")
    address: str | None = Field(None, description="Postal address shown in the footer.")
    date_format: str = Field("%-d %B %Y", description="strftime format for dates in the email.")
    language: str = Field("en-GB", description="The email's language tag (html lang).")
    choosable_sections: bool = Field(
        False,
        description="Let subscribers choose their sections on sign-up and preferences pages.",
    )
    public_url: str | None = Field(
        None,
        description="Public app base URL for sign-up and preferences; default: unsubscribe_url's.",
    )

    @field_validator("unsubscribe_url", "archive_url", "logo_url", "public_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"expected an http(s) URL, got {redact_url(value)!r}")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _has_token(cls, value: str | None) -> str | None:
        if value is not None and "{token}" not in value:
            raise ValueError(
                f"must contain {{token}} where the subscriber's token goes: {redact_url(value)!r}"
            )
        return headervalues.header_url(value) if value is not None else None

    @field_validator("from_address", "reply_to")
    @classmethod
    def _named_mailbox(cls, value: str | None) -> str | None:
        return headervalues.mailbox(value, allow_name=True) if value is not None else None

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _bare_mailbox(cls, value: str | None) -> str | None:
        return headervalues.mailbox(value, allow_name=False) if value is not None else None

    @field_validator("title", "subject", "date_format")
    @classmethod
    def _header_text(cls, value: str | None) -> str | None:
        return headervalues.header_text(value) if value is not None else None


class ThemeConfig(_Strict):
    """Branding applied by the default templates."""

    accent: str = Field("#1d4f91", description="Accent colour, six-digit hex.")
    font: str = Field(
        "Helvetica, Arial, sans-serif", description="CSS font stack for all text cells."
    )

    @field_validator("accent")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX_COLOUR.match(value):
            raise ValueError(f"expected a six-digit hex colour like '#1d4f91', got {value!r}")
        return value.lower()


class FeedConfig(_Strict):
    """One feed: a section of the newsletter."""

    name: str = Field(description="The section heading.")
    url: str = Field(description="http(s) URL, or a file path relative to config.yaml.")
    section: str | None = Field(None, description="Merge into this heading instead of `name`.")
    max_posts: int | None = Field(None, ge=1, description="At most this many posts from this feed.")
    include: list[str] = Field(
        default_factory=list, description="Keep only posts matching one of these words or regexes."
    )
    exclude: list[str] = Field(
        default_factory=list, description="Drop posts matching any of these words or regexes."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.lower()
        if scheme in ("http", "https", "") or (len(scheme) == 1 and value[1:2] == ":"):
            return value
        raise ValueError(f"expected an http(s) URL or a file path, got scheme '{scheme}:'")

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                message = f"{pattern!r} is not a valid regular expression: {error}"
                raise ValueError(message) from None
        return patterns

    @property
    def heading(self) -> str:
        """The section this feed's posts appear under."""
        return self.section or self.name

    @property
    def is_remote(self) -> bool:
        """Whether the feed is fetched over HTTP rather than read from disk."""
        return urlsplit(self.url).scheme.lower() in ("http", "https")


class DigestOptions(_Strict):
    """What makes a post new and how many go in an issue."""

    max_posts_per_section: int = Field(10, ge=1, description="Cap on posts per section.")
    lookback_days: int = Field(14, ge=1, description="Posts older than this are never new.")
    skip_if_empty: bool = Field(True, description="Send nothing when there are no new posts.")
    min_posts: int = Field(
        1,
        ge=1,
        description="Fewer new posts than this: the slot is skipped; they roll over to the next.",
    )


class SignupConfig(_Strict):
    """Readers subscribing themselves through `digest serve`: double opt-in, limits, consent."""

    enabled: bool = Field(False, description="Serve /subscribe, /confirm and /preferences.")
    consent_text: str = Field(
        "Send me the newsletter by email. I can unsubscribe at any time.",
        description="Consent sentence on the form; its SHA-256 is kept with each sign-up.",
    )
    confirm_within: float = Field(
        7 * 86400, gt=0, description="How long a confirmation link works, e.g. '7d'."
    )
    preferences_valid_for: float = Field(
        180 * 86400, gt=0, description="How long a preferences link in a message works."
    )
    welcome: bool = Field(True, description="Send a welcome email after confirming.")
    per_address_every: float = Field(
        600, ge=0, description="At most one confirmation email per address this often."
    )
    per_address_per_day: int = Field(
        3, ge=1, description="At most this many confirmation emails per address a day."
    )
    per_ip_per_hour: int = Field(
        20, ge=1, description="At most this many sign-ups from one IP address an hour."
    )
    keep_ip: Literal["full", "truncated", "none"] = Field(
        "truncated",
        description="Sign-up IP kept as consent evidence: full, truncated (/24, /48) or none.",
    )
    empty_choice: Literal["skip", "send_all"] = Field(
        "skip",
        description="When chosen sections have nothing new: skip, or send_all (whole issue).",
    )

    @field_validator("confirm_within", "preferences_valid_for", "per_address_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class DkimConfig(_Strict):
    """DKIM signing of outgoing mail."""

    selector: str = Field(description="DNS selector, e.g. 'digest'.")
    domain: str = Field(description="Signing domain, e.g. 'example.org'.")
    key_file: str = Field(description="PEM private key, relative to config.yaml.")

    @field_validator("selector", "domain")
    @classmethod
    def _dns(cls, value: str) -> str:
        return headervalues.dns_name(value)


class SmtpConfig(_Strict):
    """The mail server digest hands messages to."""

    host: str = Field("localhost", description="SMTP server host name.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls | ssl | none."
    )
    username: str | None = Field(None, description="AUTH user name, if the server needs one.")
    password: str | None = Field(None, description="AUTH password; use ${SMTP_PASSWORD}.")
    timeout: float = Field(30, gt=0, description="Seconds to wait for the server.")
    retries: int = Field(3, ge=0, description="Retries for a temporary (4xx) failure.")
    retry_delay: float = Field(2.0, ge=0, description="Seconds before the first retry; doubles.")
    connections: int = Field(
        8,
        ge=1,
        le=32,
        description="Connections used in parallel (fewer if the server refuses more).",
    )
    max_per_second: float | None = Field(None, gt=0, description="Optional rate cap.")
    dkim: DkimConfig | None = Field(None, description="Sign messages with DKIM.")
    return_path: str | None = Field(
        None,
        description="Envelope sender for bounces; bounces+{token}@example.org names each delivery.",
    )

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        checked = headervalues.mailbox(value.replace("{token}", "token"), allow_name=False)
        if value.count("{token}") > 1 or "{token}" in checked.rsplit("@", 1)[-1]:
            raise ValueError("{token} may appear once, in the part before the @")
        local = value.rsplit("@", 1)[0]
        if len(local.replace("{token}", "x" * 24)) > 64:
            raise ValueError("the part before the @ is too long for a token (64 characters)")
        return value


class FetchConfig(_Strict):
    """How feeds are fetched."""

    timeout: float = Field(
        15,
        gt=0,
        description="Seconds for each feed's whole request: connecting, headers, body, redirects.",
    )
    max_bytes: int = Field(
        10_000_000,
        ge=1024,
        description="Largest feed body accepted, both as sent and once decompressed.",
    )
    concurrency: int = Field(32, ge=1, le=64, description="Feeds fetched at once, in all.")
    per_host: int = Field(
        3, ge=1, le=16, description="Feeds fetched at once from any one host (politeness)."
    )
    user_agent: str = Field(DEFAULT_USER_AGENT, description="User-Agent header sent to servers.")

    @field_validator("user_agent")
    @classmethod
    def _header(cls, value: str) -> str:
        return headervalues.printable_ascii(value)


class ApprovalConfig(_Strict):
    """An approver's yes before each scheduled send (`digest run` only)."""

    required: bool = Field(False, description="Send a scheduled issue only once it is approved.")
    before: float = Field(
        2 * 3600,
        gt=0,
        description="How long before the slot the draft goes to the approvers, e.g. 2h.",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="Addresses that get the draft with Approve and Hold links.",
    )
    on_timeout: Literal["hold", "send"] = Field(
        "hold", description="No answer by the slot: hold (approvers told) or send."
    )

    @field_validator("before", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _someone_approves(self) -> ApprovalConfig:
        if self.required and not self.approvers:
            raise ValueError("approval.required needs at least one address in approvers")
        return self


class ScheduleConfig(_Strict):
    """When `digest run` sends: day + time, or a cron expression."""

    day: str | None = Field(None, description="Weekday name, with `time`.")
    time: str | None = Field(None, description='Time of day "HH:MM", with `day`.')
    cron: str | None = Field(None, description="Standard 5-field cron expression instead.")
    timezone: str = Field("UTC", description="IANA time zone, e.g. Europe/London.")
    grace: float = Field(
        6 * 3600,
        ge=0,
        description="How late a slot may still go out: caught up on start-up, retried on failure.",
    )
    retry_every: float = Field(
        15 * 60,
        gt=0,
        description="How often `digest run` retries a slot that failed or left messages pending.",
    )
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)

    @field_validator("grace", "retry_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("day")
    @classmethod
    def _weekday(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in WEEKDAYS:
            raise ValueError(f"expected a weekday name such as 'monday', got {value!r}")
        return value.strip().lower() if value else value

    @field_validator("time")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", value.strip()):
            raise ValueError(f'expected a time like "08:00", got {value!r}')
        return value.strip() if value else value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value.strip() if value else value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"expected an IANA time zone such as 'Europe/London', got {value!r}"
            raise ValueError(message) from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ScheduleConfig:
        if self.cron and (self.day or self.time):
            raise ValueError("give either cron or day + time, not both")
        if not self.cron and not (self.day and self.time):
            raise ValueError('give day and time (e.g. day: monday, time: "08:00") or cron')
        return self


class ArchiveConfig(_Strict):
    """The public web archive of sent issues: pages, an index and an Atom feed."""

    enabled: bool = Field(
        False,
        description="Publish every sent issue at newsletter.archive_url/issues/NUMBER-SLUG/.",
    )
    out_dir: str | None = Field(
        None,
        description="Folder the static archive is rewritten into after each real send.",
    )
    per_page: int = Field(20, ge=1, le=500, description="Issues per archive index page.")
    subscribe_url: str | None = Field(
        None,
        description="Where the archive's Subscribe links go; default: /subscribe, else a mailto:.",
    )

    @field_validator("subscribe_url")
    @classmethod
    def _subscribe(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https", "mailto"):
            raise ValueError(f"expected an http(s) or mailto: URL, got {redact_url(value)!r}")
        return value


class ImapConfig(_Strict):
    """The mailbox bounce and complaint reports arrive in, read over IMAP."""

    host: str = Field(description="IMAP server host name.")
    port: int = Field(993, ge=1, le=65535, description="IMAP port (993 with TLS, else 143).")
    tls: bool = Field(True, description="Connect with TLS (IMAPS).")
    ca_file: str | None = Field(
        None,
        description="PEM of a private CA or self-signed cert to trust, relative to config.yaml.",
    )
    username: str = Field(description="IMAP user name.")
    password: str = Field(description="IMAP password; use ${BOUNCES_IMAP_PASSWORD}.")
    folder: str = Field("INBOX", description="Folder the reports arrive in.")
    processed_folder: str = Field(
        "digest-processed", description="Folder processed reports are moved to (never deleted)."
    )
    timeout: float = Field(30, gt=0, description="Seconds to wait for the server.")


class WebhookConfig(_Strict):
    """Bounce and complaint events posted by an email service provider to `digest serve`."""

    mailgun_signing_key: str | None = Field(
        None, description="Mailgun's HTTP webhook signing key; use ${MAILGUN_SIGNING_KEY}."
    )
    sendgrid_public_key: str | None = Field(
        None, description="SendGrid's signed event webhook verification key (base64)."
    )
    postmark_username: str | None = Field(None, description="Basic auth user for Postmark.")
    postmark_password: str | None = Field(
        None, description="Basic auth password for Postmark; use ${POSTMARK_WEBHOOK_PASSWORD}."
    )
    max_age: float = Field(
        300, gt=0, description="Oldest signed timestamp accepted, in seconds (replay window)."
    )


class BouncesConfig(_Strict):
    """Bounces and complaints: where reports arrive and when an address is suppressed."""

    imap: ImapConfig | None = Field(None, description="Read reports from this IMAP mailbox.")
    maildir: str | None = Field(None, description="Or from this Maildir, relative to config.yaml.")
    poll_every: float = Field(
        15 * 60, gt=0, description="How often `digest run` reads the mailbox, e.g. '15m'."
    )
    soft_limit: int = Field(
        3, ge=1, description="Soft bounces on distinct issues, none delivered between, to suppress."
    )
    webhooks: WebhookConfig = Field(
        default_factory=WebhookConfig, description="ESP webhooks on the public app."
    )

    @field_validator("poll_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @property
    def mailbox_configured(self) -> bool:
        """Whether digest has a mailbox to read reports from."""
        return self.imap is not None or self.maildir is not None


class Config(_Strict):
    """The whole of config.yaml."""

    newsletter: NewsletterConfig
    theme: ThemeConfig = Field(default_factory=ThemeConfig)
    feeds: Annotated[list[FeedConfig], Field(min_length=1, description="One section each.")]
    digest: DigestOptions = Field(default_factory=DigestOptions)
    subscribers: str = Field("subscribers.csv", description="CSV (email,name) or YAML list.")
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    state: str = Field("digest.sqlite3", description="SQLite state file.")
    outbox: str = Field("outbox", description="Folder for `digest send --dry-run` .eml files.")
    inliner: Literal["premailer", "css_inline"] = Field(
        "premailer",
        description="CSS inliner: premailer, or css_inline (same output, much faster;"
        " pip install 'digest[fast]').",
    )
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    secret: str | None = Field(None, description="Token signing secret; or DIGEST_SECRET.")
    schedule: ScheduleConfig | None = Field(None, description="When `digest run` sends.")
    signup: SignupConfig = Field(default_factory=SignupConfig)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    bounces: BouncesConfig = Field(default_factory=BouncesConfig)
    base_dir: Path = Field(Path("."), exclude=True, description="Folder holding config.yaml.")
    source: str = Field("config.yaml", exclude=True, description="The config file as named.")

    @model_validator(mode="after")
    def _approval_has_an_address(self) -> Config:
        if self.schedule and self.schedule.approval.required and self.public_url is None:
            raise ValueError(
                "schedule.approval.required needs newsletter.public_url (where `digest serve` is"
                " reached) for the Approve and Hold links"
            )
        return self

    @model_validator(mode="after")
    def _signup_has_an_address(self) -> Config:
        if self.signup.enabled and self.public_url is None:
            raise ValueError(
                "signup.enabled needs newsletter.public_url (where `digest serve` is reached,"
                " e.g. https://news.example.org) for the links in confirmation emails"
            )
        return self

    def resolve(self, relative: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def state_path(self) -> Path:
        """Where the SQLite state lives."""
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


def dotted(path: tuple[Any, ...]) -> str:
    """A key path as the editor writes it: feeds[0].url."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class _Shown:
    """Stands for a value that must not be printed: its repr is how the error names it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _friendly(error: dict[str, Any], model_fields: list[str], shown: str | None = None) -> str:
    kind, given = error["type"], error.get("input")
    if shown is not None:
        given = _Shown(shown)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        valid = ", ".join(model_fields)
        return f"unknown key; valid keys here are: {valid}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {given!r}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {given!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {given!r}"
    if kind in ("string_type",):
        return f"expected text, got {given!r}"
    if kind in ("list_type",):
        return "expected a list (lines starting with '- ')"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "expected a mapping of keys (key: value lines, indented)"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"expected one of {expected.replace(chr(39), '')}, got {given!r}"
    if kind == "too_short":
        return "needs at least one entry"
    if kind.startswith(("greater_than", "less_than")):
        return f"{error['msg'].lower()}, got {given!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    original = error.get("input")
    if shown is not None and isinstance(original, str) and original:
        message = message.replace(repr(original), shown).replace(original, shown)
    return message


def _fields_at(path: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in path:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part)
        if field_info is None:
            return []
        annotation = field_info.annotation
        for candidate in getattr(annotation, "__args__", ()) or (annotation,):
            inner = getattr(candidate, "__args__", (candidate,))[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                model = inner
                break
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return []
    return [f.alias or name for name, f in model.model_fields.items() if not f.exclude]


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
        config = Config.model_validate({**data, "base_dir": base_dir, "source": source})
    except ValidationError as error:
        # Every mistake at once, in file order, so the editor fixes them in one pass.
        problems: dict[tuple[int, str], str] = {}
        for found in error.errors()[:MAX_REPORTED_ERRORS]:
            path = tuple(part for part in found["loc"] if part not in ("function-after",))
            fields = _fields_at(path[:-1])
            line, key = line_of(path), dotted(path)
            shown = None
            if path in SECRET_KEYS:
                shown = "a value (not shown: it is a secret)"
            elif path in expansion.written:
                shown = f"the value of {expansion.written[path][0]}"
            text = expansion.hide(_friendly(dict(found), fields, shown), path)
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
