"""Double opt-in sign-up, confirmation and preferences: what the public pages do, without HTTP.

The flow: a submitted form records a pending sign-up and yields a confirmation email with a
link that expires (`signup.confirm_within`); only a POST to that link subscribes.

A submission is handled in two steps, so that neither the answer nor its timing tells anyone
who is on the list. `submit` looks at the text alone (is it an address, a likely typo, a
section chosen, the honeypot filled) and gives the same "check your inbox" answer to every
address that passes; `act`, run later in the background, does everything that depends on the
address's standing (rate limits, new, pending, confirmed, suppressed) and queues the
confirmation email, if any. A filled honeypot field, or a sign-up over a rate limit, gets the
same answer and sends nothing.

What a reader types is only ever data: fields are bounded, control characters are dropped as
the form is read, a name is a display name and nothing else (digest.render.personalise.display_name,
digest.mail.message.to_header), and the address is taken in its canonical form
(digest.core.addresses). `act` builds the confirmation email before it records anything, then
records the rate-limit slot, the pending sign-up and its consent row in one transaction with
the email queued in the outbox (digest.store.outbox), which whichever process runs sends
(digest.readers.outbox): a sign-up is on record exactly while its email is waiting or once it
went; an email the server refuses for good takes the sign-up back.

Rate limits (kept in the state file, so every process shares them): one confirmation email per
address per `per_address_every`, `per_address_per_day` a day, and `per_ip_per_hour` sign-ups
from one IP address. Addresses and IPs are keyed-hashed in the rate log.

Consent on record: when the form was submitted, from which page and IP (truncated by
`signup.keep_ip`), the SHA-256 of the consent sentence shown, and when it was confirmed. The
page is the form's hidden `page` field (`digest snippet --page URL` writes it into a form for
the organisation's site), else the Referer, which the built-in form's own page sends (its
Referrer-Policy is same-origin; every other page sends none). Either way it is only data for
the record: an http(s) URL without its fragment or credentials, at most MAX_PAGE characters
(the query goes first when it is too long), else nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jinja2

from digest.config.schema import Config
from digest.core import counters
from digest.core.addresses import AddressError, canonical_address
from digest.core.models import OutgoingMessage, Subscriber
from digest.core.tokens import (
    TRANSACTIONAL_REFERENCE,
    address_hash,
    check_purpose_token,
    delivery_tag,
    make_purpose_token,
)
from digest.mail.message import DkimKey, transactional_message
from digest.readers.audience import is_forgotten, section_titles
from digest.render.message import render_message
from digest.render.personalise import display_name
from digest.store import RateLimit, State

logger = logging.getLogger(__name__)

PAGES = Path(__file__).resolve().parent.parent / "pages"
HONEYPOT_FIELD = "website"
PAGE_FIELD = "page"
MAX_PAGE = 500
MAX_NAME = 100
MAX_EMAIL = 254
CHOOSE_ONE = "Choose at least one thing you would like to receive."
RESUBSCRIBE_PURPOSE = "resubscribe"
# How long the "Subscribe again" button on the page that unsubscribed a reader works.
RESUBSCRIBE_WITHIN = timedelta(days=1)


# Mail providers whose names are often mistyped; a domain one edit away from one of these gets
# a "did you mean" (once: submitting the same address again goes ahead).
COMMON_DOMAINS = (
    "gmail.com",
    "googlemail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "outlook.com",
    "live.com",
    "live.co.uk",
    "yahoo.com",
    "yahoo.co.uk",
    "icloud.com",
    "btinternet.com",
    "aol.com",
    "protonmail.com",
    "mail.com",
    "gmx.com",
    "me.com",
    "mac.com",
)


@dataclass(frozen=True)
class SignupForm:
    """What a reader typed into the sign-up form, as one-line text without control characters."""

    email: str = ""
    name: str = ""
    sections: tuple[str, ...] | None = None  # None: every section
    honeypot: bool = False  # the hidden field had something in it
    checked: str = ""  # an address the reader was asked about once and submitted again
    page: str = ""  # the page the form says it is on (recorded_page), or ""


def recorded_page(text: str) -> str:
    """The page a sign-up came from as kept on record: an absolute http(s) URL with no
    whitespace or control characters, without its fragment or any user:password, at most
    MAX_PAGE characters (without its query when that makes it fit); "" for anything else.
    Never used for anything but the record."""
    text = text.strip()
    if not text or len(text) > 8 * MAX_PAGE or not text.isprintable() or " " in text:
        return ""
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0  # a port that is not a number raises
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        return ""
    netloc = parts.netloc.rsplit("@", 1)[-1]
    page = urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))
    if len(page) > MAX_PAGE:
        page = urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))
    return page if len(page) <= MAX_PAGE else ""


def _one_edit_apart(first: str, second: str) -> bool:
    """Whether two strings differ by one insertion, deletion, substitution or swap."""
    if first == second or abs(len(first) - len(second)) > 1:
        return False
    if len(first) == len(second):
        differ = [n for n, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
        if len(differ) == 1:
            return True
        return (
            len(differ) == 2
            and differ[1] == differ[0] + 1
            and first[differ[0]] == second[differ[1]]
            and first[differ[1]] == second[differ[0]]
        )
    shorter, longer = sorted((first, second), key=len)
    return any(longer[:n] + longer[n + 1 :] == shorter for n in range(len(longer)))


def suggestion(address: str) -> str:
    """A likely intended address when the domain is one edit from a common provider's; or ""."""
    local, _, domain = address.rpartition("@")
    if domain.lower() in COMMON_DOMAINS:
        return ""
    for common in COMMON_DOMAINS:
        if _one_edit_apart(domain.lower(), common):
            return f"{local}@{common}"
    return ""


@dataclass(frozen=True)
class SignupRequest:
    """A submission that passed every check on its text, for `act` to carry out later."""

    address: str  # canonical
    name: str
    sections: tuple[str, ...] | None
    ip: str
    page: str
    at: datetime


@dataclass(frozen=True)
class Submitted:
    """The answer to a submission: an error to show with the form, or the same "check your
    inbox" answer for everyone, with the request to carry out in the background (if any)."""

    error: str = ""
    form: SignupForm = SignupForm()
    request: SignupRequest | None = None
    asked: bool = False  # the error is a "did you mean": the same address again goes ahead
    field: str = ""  # the field the error is about: "email" or "sections"


@dataclass(frozen=True)
class LinkCheck:
    """Who a confirmation or preferences link is for, or why it cannot be used; and the issue
    whose message carried it, when the link names one."""

    address: str | None
    problem: str = ""  # "", "invalid" or "expired"
    issue: int | None = None


def consent_hash(config: Config) -> str:
    """The SHA-256 of the consent sentence the form shows, kept with every sign-up."""
    return hashlib.sha256(config.signup.consent_text.encode("utf-8")).hexdigest()


def kept_ip(config: Config, ip: str) -> str:
    """The part of a sign-up's IP address kept as evidence, as signup.keep_ip says."""
    if config.signup.keep_ip == "none" or not ip:
        return ""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if config.signup.keep_ip == "full":
        return str(parsed)
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False).network_address)


def parse_form(config: Config, fields: Mapping[str, Sequence[str]]) -> SignupForm:
    """The form's fields as one-line text without control characters, bounded; sections only
    those the newsletter has. The honeypot is filled when any of its values has anything in
    it, even only spaces, and however often it is repeated."""

    def first(name: str, limit: int) -> str:
        values = fields.get(name) or [""]
        return display_name(values[0][: 4 * limit], limit)

    sections: tuple[str, ...] | None = None
    if config.newsletter.choosable_sections:
        titles = section_titles(config)
        chosen = set(fields.get("section") or [])
        sections = tuple(title for title in titles if title in chosen)
    return SignupForm(
        email=first("email", MAX_EMAIL + 10),
        name=first("name", MAX_NAME),
        sections=sections,
        honeypot=any(value != "" for value in fields.get(HONEYPOT_FIELD) or []),
        checked=first("checked", MAX_EMAIL + 10),
        page=recorded_page((fields.get(PAGE_FIELD) or [""])[0]),
    )


def rate_limits(config: Config, secret: str, address: str, ip: str) -> list[RateLimit]:
    """The limits one more confirmation email to `address`, asked for from `ip`, must fit."""
    person = f"address:{address_hash(secret, address)}"
    limits = [
        RateLimit(person, timedelta(seconds=config.signup.per_address_every), 1),
        RateLimit(person, timedelta(days=1), config.signup.per_address_per_day),
    ]
    if ip:
        limits.append(
            RateLimit(
                f"ip:{address_hash(secret, ip)}", timedelta(hours=1), config.signup.per_ip_per_hour
            )
        )
    return limits


def normalised_address(text: str) -> tuple[str, str]:
    """(canonical address, "") or ("", why not), from the text alone.

    The uncached form of canonical_address: a cache hit would answer faster for an address
    this process has seen before, and the time of the answer must not say that.
    """
    if not text.strip():
        return "", "Enter your email address."
    try:
        return canonical_address.__wrapped__(text), ""
    except AddressError:
        # The validator's reasons are written for developers ("the part after the @-sign is
        # not valid"); a reader is told plainly what an address looks like.
        if "@" not in text:
            return "", "Enter an email address with an @ in it, like name@example.com."
        return "", "Enter an email address in the right format, like name@example.com."


def submit(config: Config, form: SignupForm, *, ip: str, page: str, now: datetime) -> Submitted:
    """Look at a submitted form's text only: an error to show, or the same answer for every
    address, with what `act` is to do later. Nothing here reads the state. `page` is the
    request's Referer: the page recorded is the form's own `page` field, else that."""
    if form.honeypot:
        logger.info("sign-up with the honeypot filled ignored")
        counters.count(counters.SIGNUPS, outcome="honeypot")
        return Submitted(form=form)
    address, problem = normalised_address(form.email)
    if problem:
        return Submitted(error=problem, form=form, field="email")
    likely = suggestion(address)
    if likely and form.checked != form.email:
        return Submitted(
            error=f"Did you mean {likely}? If {address} is right, press Subscribe again.",
            form=form,
            asked=True,
            field="email",
        )
    if config.newsletter.choosable_sections and not form.sections:
        return Submitted(error=CHOOSE_ONE, form=form, field="sections")
    request = SignupRequest(
        address=address,
        name=display_name(form.name, MAX_NAME),
        sections=form.sections,
        ip=ip,
        page=form.page or recorded_page(page),
        at=now,
    )
    return Submitted(form=form, request=request)


def act(
    config: Config,
    state: State,
    secret: str,
    request: SignupRequest,
    *,
    dkim_key: DkimKey | None,
) -> tuple[str, int | None]:
    """Carry out a sign-up: (what came of it, the outbox entry of its confirmation email).
    What came of it: "queued", "subscribed" (already, nothing to do) or "rate-limited".

    In that order: look (nothing written), build the confirmation email, then in one
    transaction record the rate-limit slot, the pending sign-up and its consent, and queue the
    email in the outbox (digest.store.outbox), which whichever process runs sends
    (digest.readers.outbox). So a sign-up is on record exactly when its email is waiting or
    went: an email that cannot be built (DKIM) leaves the state as it was and uses up no rate
    limit, and one the server refuses for good (no SMTPUTF8 for a non-ASCII address, a
    rejected recipient) takes the sign-up, its consent and its slot back when it is given up.
    """
    address, now = request.address, request.at
    existing = state.signups.signup(address)
    if existing is not None and existing.status == "confirmed":
        # The form is anonymous: a subscriber's details change only through their own link.
        counters.count(counters.SIGNUPS, outcome="already_subscribed")
        return "subscribed", None
    limits = rate_limits(config, secret, address, request.ip)
    if not state.signups.fits(limits, now):
        logger.info("sign-up over the rate limit: no confirmation email sent")
        counters.count(counters.SIGNUPS, outcome="rate_limited")
        return "rate-limited", None
    expires = now + timedelta(seconds=config.signup.confirm_within)
    token = make_purpose_token(secret, "confirm", address, expires)
    link = f"{config.public_url}/confirm?token={token}"
    message = _confirmation(config, secret, address, request.name, link, now, dkim_key)
    with state.transaction():
        if not state.signups.allow(limits, now):  # another process used the last slot
            logger.info("sign-up over the rate limit: no confirmation email sent")
            counters.count(counters.SIGNUPS, outcome="rate_limited")
            return "rate-limited", None
        state.signups.request(
            address,
            request.name,
            request.sections,
            now,
            page=request.page,
            ip=kept_ip(config, request.ip),
            consent_sha256=consent_hash(config),
        )
        entry = state.outbox.add(
            "confirmation",
            address,
            message,
            now,
            undo={"buckets": sorted({limit.bucket for limit in limits})},
        )
    counters.count(counters.SIGNUPS, outcome="queued")
    return "queued", entry


def check_link(secret: str, purpose: str, token: str | None, now: datetime) -> LinkCheck:
    """Who a link's token is for, if it is ours, for this purpose and not expired."""
    if not token:
        return LinkCheck(None, "invalid")
    checked = check_purpose_token(secret, purpose, token, now)
    return LinkCheck(checked.address, checked.problem, checked.issue)


def confirm(
    config: Config,
    state: State,
    secret: str,
    address: str,
    *,
    ip: str,
    now: datetime,
    dkim_key: DkimKey | None,
) -> tuple[str, int | None]:
    """Subscribe a pending sign-up: ("confirmed" | "already" | "unknown", the outbox entry of
    its welcome email, if one is sent).

    The welcome is built before the sign-up is confirmed and queued in the outbox in the same
    transaction, so a confirmation never stops half way with nothing to send, and a welcome
    waits only for a subscriber on record."""
    signup = state.signups.signup(address)
    welcome = (
        _welcome(
            config, secret, address, signup.name, latest_issue_url(config, state), now, dkim_key
        )
        if signup is not None and config.signup.welcome
        else None
    )
    entry = None
    with state.transaction():
        outcome = state.signups.confirm(address, now, ip=kept_ip(config, ip))
        if outcome == "confirmed":
            # Signing up again and confirming is the person's own, fresh consent.
            state.suppressions.unsuppress(address)
            state.signups.unforget(address_hash(secret, address))
            if welcome is not None:
                entry = state.outbox.add("welcome", address, welcome, now)
    if outcome == "confirmed":
        counters.count(counters.CONFIRMATIONS)
    return outcome, entry


def preferences_link(config: Config, secret: str, address: str, now: datetime) -> str:
    """A fresh link to an address's preferences page."""
    expires = now + timedelta(seconds=config.signup.preferences_valid_for)
    token = make_purpose_token(secret, "preferences", address, expires)
    return f"{config.public_url}/preferences?token={token}"


def resubscribe_token(secret: str, address: str, now: datetime) -> str:
    """The token of the "Subscribe again" button shown to a reader who just unsubscribed: it
    names their address only, so it cannot bring anyone else back."""
    return make_purpose_token(secret, RESUBSCRIBE_PURPOSE, address, now + RESUBSCRIBE_WITHIN)


def resubscribe(
    config: Config,
    state: State,
    secret: str,
    address: str,
    listed: Subscriber | None,
    *,
    source: str,
    page: str,
    ip: str,
    now: datetime,
) -> bool:
    """Subscribe again a reader who unsubscribed themselves (their "Subscribe again" button):
    lift their unsubscribe and record it as a fresh consent, with the page and the consent
    sentence shown. Their name and sections were kept, so they get what they got before.

    False, changing nothing, for an address that is nobody's to bring back: forgotten, neither
    in the subscriber file (`listed`) nor a confirmed sign-up, or not unsubscribed by its
    reader (a bounce, a complaint or the editor's suppression stays)."""
    if is_forgotten(address, state.signups.forgotten(), secret):
        return False
    signup = state.signups.signup(address)
    if listed is None and (signup is None or signup.status != "confirmed"):
        return False
    with state.transaction():
        if not state.suppressions.lift_unsubscribe(address):
            return address not in state.suppressions.suppressed()
        state.signups.resubscribed(
            address,
            now,
            source,
            page=page,
            ip=kept_ip(config, ip),
            consent_sha256=consent_hash(config),
        )
    logger.info("subscribed again %s (%s)", address, source)
    return True


NO_LONGER_SUBSCRIBED = "This address is no longer subscribed, so there is nothing to change."


@dataclass(frozen=True)
class Preferences:
    """What the preferences page shows for one subscriber."""

    address: str
    name: str
    sections: tuple[str, ...]  # the sections they get now
    unsubscribed: bool


def preferences(
    config: Config, state: State, secret: str, address: str, listed: Subscriber | None
) -> Preferences | None:
    """An address's current name, sections and standing; None when it is nobody's to change:
    neither in the subscriber file (`listed`, its entry there) nor a confirmed sign-up, or
    forgotten. An old link then changes nothing and brings nobody back."""
    if is_forgotten(address, state.signups.forgotten(), secret):
        return None
    signup = state.signups.signup(address)
    if listed is None and (signup is None or signup.status != "confirmed"):
        return None
    titles = section_titles(config)
    chosen = signup.sections if signup and signup.sections is not None else tuple(titles)
    return Preferences(
        address=address,
        name=signup.name if signup and signup.name else (listed.name if listed else ""),
        sections=tuple(title for title in titles if title in chosen),
        unsubscribed=address in state.suppressions.suppressed(),
    )


def save_preferences(
    config: Config,
    state: State,
    address: str,
    form: SignupForm,
    *,
    listed: bool,
    ip: str,
    now: datetime,
) -> str:
    """Save a name and sections from the preferences page of a subscriber (one `preferences`
    found, `listed` when the subscriber file lists them); an error to show, or ""."""
    if config.newsletter.choosable_sections and not form.sections:
        return f"{CHOOSE_ONE[:-1]}, or unsubscribe below."
    saved = state.signups.update_preferences(
        address, form.name, form.sections, now, listed=listed, ip=kept_ip(config, ip)
    )
    return "" if saved else NO_LONGER_SUBSCRIBED


# -- the emails ---------------------------------------------------------------


@cache
def _form_templates() -> jinja2.Environment:
    """The sign-up form snippet's template (a page part, not an email)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PAGES)),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(template: str, **context: Any) -> str:
    """One of digest/pages' templates rendered: the sign-up form snippet (a page part, not an
    email), HTML autoescaped, an undefined name an error."""
    return _form_templates().get_template(template).render(**context)


def _email(
    config: Config,
    secret: str,
    recipient: Subscriber,
    subject: str,
    template: str,
    context: dict[str, Any],
    now: datetime,
    dkim_key: DkimKey | None,
    *,
    heading: str,
) -> OutgoingMessage:
    """A sign-up email from `template`.html and `template`.txt, built like the issue
    (digest.render.message), tagged for bounce handling."""
    rendered = render_message(
        config,
        template,
        subject=subject,
        heading=heading,
        recipient=recipient.email,
        context={"name": display_name(recipient.name), **context},
    )
    return transactional_message(
        config,
        recipient,
        rendered.subject,
        rendered.text,
        rendered.html,
        now,
        dkim_key,
        delivery_tag(secret, TRANSACTIONAL_REFERENCE, recipient.email),
    )


def latest_issue_url(config: Config, state: State) -> str:
    """Where the welcome's "Read the latest issue" goes: the newest published issue's page, or
    the archive's index while nothing is published, both served by `digest serve`; "" (no
    button) with the archive off, as newsletter.archive_url alone may be any page, or none."""
    base = (config.newsletter.archive_url or "").rstrip("/")
    if not config.archive.enabled or not base:  # the config requires the address when on
        return ""
    published = state.archive.issues()
    return f"{base}/issues/{published[0].key}/" if published else f"{base}/archive/"


def _confirmation(
    config: Config,
    secret: str,
    address: str,
    name: str,
    link: str,
    now: datetime,
    dkim_key: DkimKey | None,
) -> OutgoingMessage:
    days = max(1, round(config.signup.confirm_within / 86400))
    return _email(
        config,
        secret,
        Subscriber(address, name),
        f"Confirm your subscription to {config.newsletter.title}",
        "confirm-email",
        {"link": link, "days": days},
        now,
        dkim_key,
        heading="Confirm your subscription",
    )


def _welcome(
    config: Config,
    secret: str,
    address: str,
    name: str,
    latest_url: str,
    now: datetime,
    dkim_key: DkimKey | None,
) -> OutgoingMessage:
    return _email(
        config,
        secret,
        Subscriber(address, name),
        f"Welcome to {config.newsletter.title}",
        "welcome-email",
        {"preferences": preferences_link(config, secret, address, now), "latest_url": latest_url},
        now,
        dkim_key,
        heading=f"Welcome to {config.newsletter.title}",
    )


def snippet(config: Config, page: str = "") -> str:
    """A plain HTML form for the organisation's own site that posts to /subscribe; with `page`
    (the address of the page it goes on), a hidden field that puts that page on each sign-up's
    consent record. Browsers send another site only the origin as Referer, so without it the
    record holds just the site's address."""
    return render_page(
        "snippet.html",
        page=page,
        page_field=PAGE_FIELD,
        action=f"{config.public_url}/subscribe",
        newsletter=config.newsletter,
        sections=section_titles(config) if config.newsletter.choosable_sections else [],
        consent_text=config.signup.consent_text,
        honeypot=HONEYPOT_FIELD,
    )
