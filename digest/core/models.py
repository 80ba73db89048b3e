"""Frozen records that pass between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

MAX_TITLE = 300  # characters of a post or section title kept, everywhere
MAX_AUTHOR = 120  # characters of an author line kept, everywhere


@dataclass(frozen=True)
class Post:
    """One feed entry, cleaned: escaped nowhere yet, sanitised where it is HTML."""

    feed_url: str
    key: str
    link_key: str
    title: str
    link: str
    published: datetime | None
    updated: datetime | None = None
    author: str = ""
    summary_html: str = ""
    excerpt: str = ""  # one paragraph, for the HTML part
    excerpt_text: str = ""  # the same excerpt in lines, lists as "- " items, for the text part
    image_url: str = ""
    categories: tuple[str, ...] = ()


class FetchStatus(StrEnum):
    """How fetching one feed ended."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


@dataclass(frozen=True)
class FeedResult:
    """What collecting one feed produced, plus what to remember about the server's answer."""

    feed_url: str
    status: FetchStatus
    posts: tuple[Post, ...] = ()
    error: str = ""
    warning: str = ""
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    gone: bool = False
    elapsed_seconds: float = 0.0
    feed_title: str = ""
    # The parse cache (digest.store.parsed): a hash of exactly what was parsed, and when the
    # same bytes would parse differently (a post dated ahead of now comes due).
    parsed_key: str = ""
    reparse_after: datetime | None = None
    from_cache: bool = False


class Choice(StrEnum):
    """What the editor decided about one post for the next issue."""

    LEAVE_OUT = "leave_out"  # never in an issue, until the editor undoes it
    PIN = "pin"  # in the next issue, first in its section, whatever the caps and filters


@dataclass(frozen=True)
class Section:
    """A heading and its posts, newest first."""

    title: str
    posts: tuple[Post, ...]


@dataclass(frozen=True)
class Issue:
    """One edition of the newsletter before rendering."""

    title: str
    date: datetime
    sections: tuple[Section, ...]
    note: str = ""  # the editor's Markdown note for this issue only (`digest note`)

    @property
    def posts(self) -> tuple[Post, ...]:
        """Every post in the issue, in section order."""
        return tuple(post for section in self.sections for post in section.posts)

    @property
    def post_count(self) -> int:
        """How many posts the issue carries."""
        return len(self.posts)


@dataclass(frozen=True)
class RenderedIssue:
    """The issue rendered once, with slots left for per-subscriber fields.

    `marker` is the issue's random slot marker (see render.slot); "" means the fixed
    placeholders of issues frozen by 0.1.0.
    """

    subject: str
    html: str
    text: str
    warnings: tuple[str, ...] = ()
    marker: str = ""


@dataclass(frozen=True)
class Subscriber:
    """One recipient: from the subscriber file or a confirmed sign-up."""

    email: str
    name: str = ""
    sections: tuple[str, ...] | None = None  # the sections chosen; None: every section


@dataclass(frozen=True)
class SubscriberList:
    """The subscriber file, read and checked: who gets mail and what was wrong with the rest."""

    subscribers: tuple[Subscriber, ...]
    invalid: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()


class DeliveryStatus(StrEnum):
    """Where one recipient's message stands."""

    SENT = "sent"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True)
class Delivery:
    """The outcome of handing one subscriber's message to the SMTP server."""

    email: str
    status: DeliveryStatus
    reply: str = ""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for the SMTP server: envelope and the exact bytes.

    `wire`, when the builder could make it cheaply, is `data` as DATA sends it (CRLF lines,
    leading dots doubled, ending CRLF.CRLF), so the sender need not scan the message again.
    """

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool = False
    wire: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SendReport:
    """What a send did, for the CLI and the scheduler's log."""

    issue_id: int | None
    post_count: int
    sent: int = 0
    failed: int = 0
    pending: int = 0
    skipped_reason: str = ""
    held: bool = False  # waiting for approval: the slot is tried again within grace
    resumed: bool = False
    feed_problems: tuple[str, ...] = field(default_factory=tuple)
    outbox: str = ""
    skipped_subscribers: tuple[str, ...] = field(default_factory=tuple)  # invalid rows, by line
