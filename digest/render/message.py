"""One-off emails (the sign-up confirmation, the welcome, the "held" notice, the editor's report),
built like the issue.

They use the issue's template system rather than a page template of their own: the editor's
templates/ folder over the bundled files, the sandboxed and bounded environment, the same head,
email.css and email-head.css (so the theme, logo, dark mode and phone rules are the issue's),
CSS inlined by the configured inliner, and a text part wrapped at 78 columns. Each email is a
pair NAME.html and NAME.txt extending message.html and message.txt. Pure: no clock, no network.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from digest.config.schema import Config
from digest.render.htmltext import collapse, shorten
from digest.render.inline import inline_css
from digest.render.issue import PREHEADER_LENGTH, wrap_text
from digest.render.templates import render_template, template_environment
from digest.render.theme import theme_view

MESSAGES = ("confirm-email", "welcome-email", "held-email", "report-email")

MESSAGE_VARIABLES: dict[str, str] = {
    "subject": "The email's subject line.",
    "heading": "The heading at the top of the email.",
    "preheader": "The hidden preview line mail lists show.",
    "recipient": "Who the email is sent to: the address (report-email: every reports.email_to).",
    "newsletter": "Every newsletter.* key of config.yaml.",
    "theme": "The theme, as in the issue (accent, font, link, link_dark, on_accent).",
    "button(url, label)": "A macro (button.html): a bulletproof button in the accent colour.",
    "name": "confirm-email, welcome-email: the reader's name, or empty.",
    "link": "confirm-email: the confirmation link.",
    "days": "confirm-email: how many days the link works.",
    "latest_url": "welcome-email: the newest issue's page, else the archive's index, or empty.",
    "preferences": "welcome-email: the reader's preferences page.",
    "due": "held-email: when the issue was due.",
    "why": "held-email: why it was not sent.",
    "until": "held-email: until when approving it still sends it.",
    "approval_url": "held-email: the approver's link to the approval page.",
    "issue": "report-email: the issue's number, as `digest report` and `digest history` show it.",
    "issue_subject": "report-email: the issue's subject line.",
    "sent": "report-email: when the issue was sent, in newsletter.date_format.",
    "hours": "report-email: how many hours after the send the figures were taken.",
    "warnings": "report-email: the health warnings, each with .text and .advice.",
    "figures": "report-email: each figure's .label, .count and .rate, counts only.",
    "list_before": "report-email: the list's size before the issue.",
    "list_after": "report-email: the list's size after it.",
    "signups": "report-email: new confirmed sign-ups since the previous issue.",
    "tracked": "report-email: whether the issue's clicks were counted (tracking.clicks).",
    "links": "report-email: the top links, each .url, .people, .scanners and .rate.",
    "issue_url": "report-email: the issue's page in the archive, or empty (archive off).",
}


# What each email is rendered with by `digest check` (check_messages), every feature on.
SAMPLE_CONTEXTS: dict[str, dict[str, Any]] = {
    "confirm-email": {
        "name": "Sam Reader",
        "link": "https://example.org/confirm?token=sample",
        "days": 2,
    },
    "welcome-email": {
        "name": "Sam Reader",
        "preferences": "https://example.org/preferences?token=sample",
        "latest_url": "https://example.org/issues/1-sample/",
    },
    "held-email": {
        "due": "2017-12-01T08:00:00+00:00",
        "why": "not approved in time",
        "until": "2017-12-01T14:00:00+00:00",
        "approval_url": "https://example.org/approval?token=sample",
    },
    "report-email": {
        "issue": 12,
        "issue_subject": "Sample issue",
        "sent": "1 December 2017",
        "hours": 72,
        "warnings": [
            {
                "text": "Issue 12's complaint rate is 0.2% (2 of 1,000 delivered), above the 0.1%"
                " set in reports.max_complaint_rate.",
                "advice": "Make sure everyone on the list asked for the newsletter.",
            }
        ],
        "figures": [
            {"label": "Delivered", "count": "1,000", "rate": "99.5%"},
            {"label": "Complaints", "count": "2", "rate": "0.2%"},
        ],
        "list_before": "1,005",
        "list_after": "1,003",
        "signups": "4",
        "tracked": True,
        "links": [
            {"url": "https://example.org/post", "people": "30", "scanners": "2", "rate": "3%"}
        ],
        "issue_url": "https://example.org/issues/12-sample/",
    },
}


@dataclass(frozen=True)
class RenderedMessage:
    """A one-off email's subject, HTML (CSS inlined) and plain-text part."""

    subject: str
    html: str
    text: str


def render_message(
    config: Config,
    name: str,
    *,
    subject: str,
    heading: str,
    recipient: str,
    context: Mapping[str, Any],
    preheader: str = "",
) -> RenderedMessage:
    """Render the one-off email `name` (NAME.html and NAME.txt) for one recipient."""
    if name not in MESSAGES:
        raise ValueError(f"unknown email {name!r}; one of {', '.join(MESSAGES)}")
    env = template_environment(config.templates_dir)
    values = {
        **context,
        "subject": subject,
        "heading": heading,
        "preheader": shorten(collapse(preheader or heading), PREHEADER_LENGTH),
        "recipient": recipient,
        "newsletter": config.newsletter,
        "theme": theme_view(config),
    }
    inliner = config.inliner
    if inliner == "css_inline" and importlib.util.find_spec("css_inline") is None:
        inliner = "premailer"  # the issue says so (render_issue); a sign-up email still goes
    html = inline_css(render_template(env, f"{name}.html", values), inliner)
    text = wrap_text(render_template(env, f"{name}.txt", values))
    return RenderedMessage(subject=subject, html=html, text=text)


def check_messages(config: Config) -> None:
    """Render every one-off email on sample values, so a mistake in an editor's template is a
    TemplateError naming its file and line now, not when a reader signs up."""
    for name in MESSAGES:
        render_message(
            config,
            name,
            subject=f"Sample {name}",
            heading=f"Sample {name}",
            recipient="sam@example.org",
            context=SAMPLE_CONTEXTS[name],
        )
