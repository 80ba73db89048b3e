"""Approval before a scheduled send: the draft to the approvers, their answer, and the gate a
slot's send passes through (`schedule.approval`), which sends what the approvers saw."""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from digest import store
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.core.models import Delivery, DeliveryStatus, Issue, Subscriber
from digest.core.tokens import APPROVAL_PURPOSE, make_purpose_token
from digest.issue.group import skip_reason
from digest.issue.prepare import Collection, Prepared, narrowed, prepare
from digest.mail.message import envelope_for, load_dkim, transactional_message
from digest.mail.smtp import Mailer
from digest.render.htmltext import after_body_tag
from digest.render.message import render_message
from digest.render.personalise import personalise
from digest.render.theme import theme_view
from digest.run.editions import PREVIEW_SUBSCRIBER
from digest.run.preview import preview_unsubscribe
from digest.run.send import Gate, GateAnswer
from digest.run.slots import require_schedule, slot_key
from digest.store import State

logger = logging.getLogger(__name__)

DECISIONS = ("approved", "held")


def draft_keys(issue: Issue) -> frozenset[str]:
    """What an approval covers, as kept with it: each post ("feed URL\nkey") and, when there is
    one, the editor's note (by its SHA-256, an entry with no newline), so that a note written or
    changed after the draft needs approving too."""
    posts = {f"{post.feed_url}\n{post.key}" for post in issue.posts}
    if issue.note:
        posts.add(f"note {hashlib.sha256(issue.note.encode('utf-8')).hexdigest()}")
    return frozenset(posts)


def _post_keys(kept: frozenset[str]) -> frozenset[tuple[str, str]]:
    """A draft's posts as kept with its approval, back as (feed URL, post key)."""
    pairs = (entry.split("\n", 1) for entry in kept if "\n" in entry)
    return frozenset((feed_url, key) for feed_url, key in pairs)


def as_drafted(config: Config, prepared: Prepared, kept: frozenset[str]) -> Prepared | None:
    """The issue at the slot as the draft showed it: the draft's posts, without any published
    since (they wait for the next issue); None when one of the draft's posts is no longer in it
    (left out, unpinned, gone from its feed) or the note is not the draft's: changes the
    approvers have not seen."""
    if draft_keys(prepared.issue) == kept:
        return prepared
    if not kept:
        return None
    drafted = narrowed(config, prepared, _post_keys(kept))
    return drafted if draft_keys(drafted.issue) == kept else None


def approval_link(config: Config, secret: str, slot: datetime, approver: str = "") -> str:
    """The signed link to a slot's approval page for one approver, good until the slot's grace
    runs out. The token names the slot and the approver, so the page can say who decided."""
    expires = slot + timedelta(seconds=require_schedule(config).grace)
    named = f"{slot_key(slot)} {approver}" if approver else slot_key(slot)
    token = make_purpose_token(secret, APPROVAL_PURPOSE, named, expires)
    return f"{config.public_url}/approval?token={quote(token, safe='')}"


def _banner_html(config: Config, link: str, slot: datetime) -> str:
    """The draft's banner, put at the top of the issue's (already inlined) HTML: styles inline,
    the link a bulletproof button (a table cell in the accent holding a padded link)."""
    theme = theme_view(config)
    font = html.escape(theme.font, quote=True)
    due = html.escape(slot.isoformat())
    return (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
        ' style="border-collapse:collapse"><tr>'
        '<td align="center" bgcolor="#fff3cd" style="padding:14px 16px;background-color:#fff3cd;'
        f"border-bottom:4px solid {theme.accent};font-family:{font};font-size:15px;"
        'line-height:22px;color:#3d2e00">'
        f'<p style="margin:0 0 10px 0;font-family:{font};font-size:15px;line-height:22px;'
        f'color:#3d2e00">Draft of the issue due {due}: it goes to subscribers only once'
        " approved.</p>"
        '<table role="presentation" cellpadding="0" cellspacing="0" border="0"'
        ' style="border-collapse:collapse"><tr>'
        f'<td align="center" bgcolor="{theme.accent}" style="background-color:{theme.accent};'
        f'border-radius:4px"><a href="{html.escape(link, quote=True)}" target="_blank"'
        f' style="display:inline-block;padding:10px 20px;font-family:{font};font-size:15px;'
        f"line-height:20px;font-weight:bold;color:{theme.on_accent};text-decoration:none;"
        'border-radius:4px">Approve or hold it</a></td></tr></table>'
        "</td></tr></table>"
    )


def _send(config: Config, messages: Sequence[tuple[str, str, str, str]], now: datetime) -> None:
    """(address, subject, text, html) each to its approver, as one-off messages."""
    dkim_key = load_dkim(config)
    outgoing = [
        transactional_message(config, Subscriber(address), subject, text, body, now, dkim_key)
        for address, subject, text, body in messages
    ]
    failed: list[str] = []

    def record(deliveries: Sequence[Delivery]) -> None:
        failed.extend(
            f"{d.email}: {d.reply}" for d in deliveries if d.status is not DeliveryStatus.SENT
        )

    with Mailer(config.smtp) as mailer:
        mailer.send_all(iter(outgoing), record)
    if failed:
        logger.warning("approvers not reached: %s", "; ".join(failed))


def request(
    config: Config, state: State, prepared: Prepared, slot: datetime, now: datetime
) -> None:
    """Keep the draft's posts with the slot's approval and send it to the approvers, with the
    link to Approve or Hold it."""
    approval = require_schedule(config).approval
    state.editorial.request_approval(slot_key(slot), draft_keys(prepared.issue), now)
    secret = state.secrets.signing_secret(config.secret)
    envelope = envelope_for(config, prepared.rendered, now)
    page, text = personalise(prepared.rendered, PREVIEW_SUBSCRIBER, preview_unsubscribe(envelope))
    subject = f"Approve? {prepared.rendered.subject}"

    def draft(address: str) -> tuple[str, str, str, str]:
        link = approval_link(config, secret, slot, address)
        banner_text = (
            f"Draft of the issue due {slot.isoformat()}: it goes to subscribers only once"
            f" approved.\nApprove or hold it: {link}\n(or `digest approve` / `digest hold`)\n\n"
        )
        return (
            address,
            subject,
            banner_text + text,
            after_body_tag(page, _banner_html(config, link, slot)),
        )

    _send(config, [draft(address) for address in approval.approvers], now)
    logger.info(
        "approval requested for slot %s from %s", slot.isoformat(), ", ".join(approval.approvers)
    )


def _tell_held(config: Config, state: State, slot: datetime, why: str, now: datetime) -> None:
    """Tell the approvers, once per slot, that its issue was not sent, why, and until when
    approving it still sends it: an email built like the issue (held-email.html and .txt)."""
    key = slot_key(slot)
    found = state.editorial.approval(key)
    if found is None or found.hold_told:
        return
    schedule = require_schedule(config)
    until = slot + timedelta(seconds=schedule.grace)
    secret = state.secrets.signing_secret(config.secret)
    subject = f"Held: {config.newsletter.title}, {slot:%Y-%m-%d}"

    def notice(address: str) -> tuple[str, str, str, str]:
        rendered = render_message(
            config,
            "held-email",
            subject=subject,
            heading=f"The issue due {slot.astimezone(UTC):%Y-%m-%d %H:%M} UTC is held",
            recipient=address,
            context={
                "due": slot.isoformat(),
                "why": why,
                "until": until.isoformat(),
                "approval_url": approval_link(config, secret, slot, address),
            },
        )
        return address, subject, rendered.text, rendered.html

    _send(config, [notice(address) for address in schedule.approval.approvers], now)
    state.editorial.told_of_hold(key)


def gate_for(config: Config, slot: datetime, now: datetime) -> Gate:
    """The check a slot's send passes through: the issue the draft showed (posts published
    since wait for the next issue), else why it is held."""

    def gate(state: State, prepared: Prepared) -> GateAnswer:
        schedule = require_schedule(config)
        approval = schedule.approval
        key = slot_key(slot)
        found = state.editorial.approval(key)
        drafted = as_drafted(config, prepared, found.posts) if found is not None else prepared
        changed = drafted is None
        if found is None or drafted is None:
            if changed:
                logger.warning("slot %s: a post of the draft left the issue; asking again", key)
            request(config, state, prepared, slot, now)
            found = state.editorial.approval(key)
            assert found is not None
            drafted = prepared
        if found.status == "approved" or (
            found.status == "requested" and approval.on_timeout == "send"
        ):
            if found.status == "requested":
                logger.warning(
                    "slot %s: no answer from the approvers; sending (on_timeout: send)", key
                )
            waiting = draft_keys(prepared.issue) - draft_keys(drafted.issue)
            if waiting:
                logger.info(
                    "slot %s: sending the draft's %d posts; %d not in it wait for the next issue",
                    key,
                    drafted.issue.post_count,
                    len(waiting),
                )
            return GateAnswer(drafted)
        if found.status == "held":
            why = "held by an approver"
        elif changed:
            why = "the issue changed after the draft (a post of it left); not approved again"
        else:
            why = "not approved in time"
        _tell_held(config, state, slot, why, now)
        if now >= slot + timedelta(seconds=schedule.grace):
            state.ledger.record_skipped_slot(key, now, why)
        return GateAnswer(prepared, f"{why}; approve within grace to send it")

    return gate


def request_ahead(config: Config, slot: datetime, now: datetime) -> bool:
    """At slot minus `before`: build the issue as it stands and send the draft to the
    approvers, once per slot. False when there is nothing to approve."""
    with store.open(config) as state:
        key = slot_key(slot)
        if state.editorial.approval(key) is not None or state.ledger.slot_handled(key):
            return False
        prepared = prepare(config, state, now, Collection(record=False))
        reason = skip_reason(config, prepared.issue.post_count)
        if reason:
            logger.info("slot %s: no approval asked (%s)", slot.isoformat(), reason)
            return False
        request(config, state, prepared, slot, now)
    return True


def decide(config: Config, decision: str, now: datetime, *, by: str, key: str | None = None) -> str:
    """Approve or hold the newest draft (or slot `key`'s); returns the slot key. This is the
    command line's decision: it overrides one already made with an approval link, and both
    stay on record (who and when)."""
    if decision not in DECISIONS:
        raise ValueError(decision)
    with store.open(config) as state, state.transaction():
        found = state.editorial.approval(key)
        if found is None:
            raise DigestError("no issue is waiting for approval")
        if state.ledger.slot_handled(found.slot_key):
            raise DigestError(f"the issue for slot {found.slot_key} is already sent or skipped")
        state.editorial.decide(found.slot_key, decision, by, now)
    if found.status in DECISIONS and found.decided_at is not None:
        logger.info(
            "slot %s %s by %s, overriding %s by %s at %s",
            found.slot_key,
            decision,
            by,
            found.status,
            found.decided_by,
            found.decided_at.isoformat(),
        )
    else:
        logger.info("slot %s %s by %s", found.slot_key, decision, by)
    return found.slot_key
