"""Readers sign themselves up through a real `digest serve`, with mail into a real aiosmtpd."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from urllib.parse import unquote

import dkim
import httpx
import pytest

from digest import store
from digest.config.schema import load_config
from digest.core.addresses import canonical_address
from digest.core.tokens import make_purpose_token
from digest.mail.message import DkimKey
from digest.readers import signup
from digest.render.personalise import display_name
from tests.conftest import Project
from tests.support import statefile
from tests.support.encodings import readable_in, urls_in
from tests.support.serving import Serving, serving
from tests.support.smtpserver import Received, SmtpServer

PUBLIC = "https://example.org"
SECRET = "test-secret"


def enable_signup(project: Project, extra: str = "") -> None:
    project.add_newsletter_lines("  choosable_sections: true\n")
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text + "signup:\n  enabled: true\n" + extra, encoding="utf-8")


@pytest.fixture
def site(project: Project) -> Iterator[tuple[Project, Serving]]:
    enable_signup(project)
    with serving(project, "--no-preview") as served:
        yield project, served


def rows(project: Project, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql, *parameters)


def wait_for_mail(project: Project, address: str, count: int = 1) -> list[Received]:
    """The first `count` messages to `address`, once they have arrived and every sign-up they
    confirm is on record (a sign-up is recorded just after its email is taken)."""
    deadline = time.monotonic() + 15
    while len(project.smtp.to(address)) < count:
        assert time.monotonic() < deadline, f"no mail for {address}"
        time.sleep(0.05)
    received = project.smtp.to(address)
    for message in received[:count]:
        if str(message.message["Subject"]).startswith("Confirm your subscription"):
            (recipient,) = message.recipients
            while not rows(project, "SELECT 1 FROM signups WHERE email = ?", recipient):
                assert time.monotonic() < deadline, f"no sign-up on record for {recipient}"
                time.sleep(0.02)
    return received


def link_in(message: Received, path: str, served: Serving) -> str:
    (link,) = set(re.findall(rf"{PUBLIC}/{path}\?token=[^\s\"<>]+", message.part("plain")))
    return link.replace(PUBLIC, served.public)


def sign_up(served: Serving, email: str, **fields: str | list[str]) -> httpx.Response:
    data: dict[str, str | list[str]] = {
        "email": email,
        "name": "",
        "website": "",
        "section": ["From the blog", "Latest news"],
    }
    data.update(fields)
    return httpx.post(f"{served.public}/subscribe", data=data, timeout=10)


def test_the_form_is_accessible_without_javascript(site: tuple[Project, Serving]) -> None:
    _, served = site
    page = httpx.get(f"{served.public}/subscribe", timeout=10)
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html
    assert '<label for="email">' in html and 'id="email" name="email"' in html
    assert "<legend>What would you like to receive?</legend>" in html
    assert 'value="From the blog" checked' in html and 'value="Latest news" checked' in html
    assert "Send me the newsletter by email" in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_double_opt_in_end_to_end(site: tuple[Project, Serving]) -> None:
    project, served = site
    answer = sign_up(served, "Zoe@Example.net", name="Zoe", section=["Latest news"], website="")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (confirmation,) = wait_for_mail(project, "Zoe@example.net")
    assert confirmation.message["List-Unsubscribe"] is None
    assert confirmation.message["Subject"] == "Confirm your subscription to Collaborate Weekly"
    assert rows(project, "SELECT email, status, sections FROM signups") == [
        ("zoe@example.net", "pending", '["Latest news"]')
    ]
    link = link_in(confirmation, "confirm", served)
    shown = httpx.get(link, timeout=10)
    assert shown.status_code == 200 and "<button" in shown.text
    assert rows(project, "SELECT status FROM signups") == [("pending",)]  # GET changed nothing
    confirmed = httpx.post(link, timeout=10)
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert rows(project, "SELECT status FROM signups") == [("confirmed",)]
    again = httpx.post(link, timeout=10)
    assert again.status_code == 200 and "You are subscribed" in again.text
    events = rows(project, "SELECT event, source, ip, consent_sha256 != '' FROM consents")
    assert events == [("submitted", "form", "127.0.0.0", 1), ("confirmed", "form", "127.0.0.0", 0)]
    welcome = wait_for_mail(project, "Zoe@example.net", 2)[1]
    assert welcome.message["Subject"] == "Welcome to Collaborate Weekly"
    # The next real issue carries only the section Zoe chose, and a preferences link.
    assert project.run("send").exit_code == 0
    issue = wait_for_mail(project, "zoe@example.net", 3)[2]
    text = issue.part("plain")
    assert "Latest news" in text and "From the blog" not in text
    assert "Manage your subscription" in text
    assert "From the blog" in project.smtp.to("ann@example.com")[0].part("plain")


def test_every_address_gets_the_same_answer(site: tuple[Project, Serving]) -> None:
    project, served = site
    assert project.run("subscribers", "add", "sub@example.net", "--source", "x").exit_code == 0
    assert project.run("unsubscribe", "gone@example.net").exit_code == 0
    sign_up(served, "pending@example.net")
    addresses = ["new@", "pending@", "sub@", "gone@"]
    answers = [sign_up(served, f"{start}example.net") for start in addresses]
    answers.append(sign_up(served, "ann@example.com"))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.text for answer in answers}) == 1


def test_an_invalid_address_keeps_what_was_typed(site: tuple[Project, Serving]) -> None:
    project, served = site
    answer = sign_up(served, "not-an-address", name="Yusuf <b>", section=["Latest news"])
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text
    assert "Enter an email address with an @ in it, like name@example.com." in answer.text
    assert 'value="not-an-address"' in answer.text and 'value="Yusuf &lt;b&gt;"' in answer.text
    assert 'value="Latest news" checked' in answer.text
    assert 'value="From the blog" checked' not in answer.text
    assert rows(project, "SELECT COUNT(*) FROM signups") == [(0,)]


def test_the_honeypot_pretends_and_sends_nothing(site: tuple[Project, Serving]) -> None:
    project, served = site
    trapped = sign_up(served, "bot@example.net", website="http://spam.example")
    honest = sign_up(served, "human@example.net")
    assert trapped.text == honest.text
    wait_for_mail(project, "human@example.net")
    assert project.smtp.to("bot@example.net") == []
    assert rows(project, "SELECT email FROM signups") == [("human@example.net",)]


def test_rate_limits_hold_back_the_next_confirmation(project: Project) -> None:
    enable_signup(project, "  per_ip_per_hour: 2\n")
    with serving(project, "--no-preview") as served:
        first = sign_up(served, "one@example.net")
        again = sign_up(served, "one@example.net")
        assert first.text == again.text
        sign_up(served, "two@example.net")
        sign_up(served, "three@example.net")  # the third to pass the address limit this hour
        wait_for_mail(project, "two@example.net")
        time.sleep(0.5)
    assert len(project.smtp.to("one@example.net")) == 1
    assert project.smtp.to("three@example.net") == []
    # Two sign-ups went through, each logged under its address and the IP, both hashed.
    logged = rows(project, "SELECT bucket FROM rate_events")
    assert len(logged) == 4 and not any("example.net" in str(row[0]) for row in logged)


def test_expired_and_tampered_links_change_nothing(site: tuple[Project, Serving]) -> None:
    project, served = site
    sign_up(served, "late@example.net")
    (confirmation,) = wait_for_mail(project, "late@example.net")
    good = link_in(confirmation, "confirm", served)
    token = unquote(good.split("token=", 1)[1])
    expired = make_purpose_token(SECRET, "confirm", "late@example.net", project.now - timedelta(1))
    wrong_purpose = make_purpose_token(
        SECRET, "preferences", "late@example.net", project.now + timedelta(days=1)
    )
    for bad in (expired, wrong_purpose, token[:-3] + "AAA", "", "x" * 5000):
        for method in ("GET", "POST"):
            answer = httpx.request(
                method, f"{served.public}/confirm", params={"token": bad}, timeout=10
            )
            assert answer.status_code in (400, 413), (bad[:20], method)
    answer = httpx.post(f"{served.public}/confirm", params={"token": expired}, timeout=10)
    assert "expired" in answer.text
    assert rows(project, "SELECT status FROM signups") == [("pending",)]


def test_preferences_change_sections_and_unsubscribe(site: tuple[Project, Serving]) -> None:
    project, served = site
    assert project.run("send").exit_code == 0
    link = link_in(project.smtp.to("ann@example.com")[0], "preferences", served)
    shown = httpx.get(link, timeout=10)
    assert shown.status_code == 200 and "ann@example.com" in shown.text
    assert 'value="Ann"' in shown.text
    saved = httpx.post(
        link, data={"action": "save", "name": "Ann B", "section": "From the blog"}, timeout=10
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    assert rows(project, "SELECT name, sections FROM signups WHERE email = 'ann@example.com'") == [
        ("Ann B", '["From the blog"]')
    ]
    none = httpx.post(link, data={"action": "save", "name": "Ann B"}, timeout=10)
    assert none.status_code == 400 and "Choose at least one thing" in none.text
    gone = httpx.post(link, data={"action": "unsubscribe"}, timeout=10)
    assert gone.status_code == 200 and "You are unsubscribed" in gone.text
    assert rows(project, "SELECT email, source FROM suppressions") == [
        ("ann@example.com", "preferences page")
    ]


def test_the_snippet_posts_the_same_fields_to_the_public_app(project: Project) -> None:
    off = project.run("snippet")
    assert off.exit_code == 1 and "sign-up is off" in off.output
    enable_signup(project)
    result = project.run("snippet")
    assert result.exit_code == 0, result.output
    html = result.output
    assert '<form method="post" action="https://example.org/subscribe"' in html
    for field in ('name="email"', 'name="name"', 'name="website"', 'value="Latest news"'):
        assert field in html
    assert "Send me the newsletter by email" in html and "<script" not in html


def test_sign_up_without_a_public_address_is_a_config_error(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if "unsubscribe_url" not in line)
    project.config.write_text(text + "\nsignup:\n  enabled: true\n", encoding="utf-8")
    result = project.run("check")
    assert result.exit_code == 2
    assert "signup.enabled needs newsletter.public_url" in result.output


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("ann@gmial.com", "ann@gmail.com"),
        ("ann@gmail.co", "ann@gmail.com"),
        ("ann@hotmial.co.uk", "ann@hotmail.co.uk"),
        ("ann@yahooo.com", "ann@yahoo.com"),
        ("ann@gmail.com", ""),
        ("ann@example.org", ""),
        ("ann@mail.com", ""),
    ],
)
def test_a_likely_typo_gets_a_did_you_mean(typed: str, meant: str) -> None:
    from digest.readers.signup import suggestion

    assert suggestion(typed) == meant


def test_did_you_mean_asks_once_then_goes_ahead(site: tuple[Project, Serving]) -> None:
    project, served = site
    asked = sign_up(served, "zed@gmial.com")
    assert asked.status_code == 400
    assert "Did you mean zed@gmail.com?" in asked.text
    assert 'name="checked" value="zed@gmial.com"' in asked.text
    assert rows(project, "SELECT COUNT(*) FROM signups") == [(0,)]
    again = sign_up(served, "zed@gmial.com", checked="zed@gmial.com")
    assert again.status_code == 200 and "Check your inbox" in again.text
    wait_for_mail(project, "zed@gmial.com")
    assert rows(project, "SELECT email FROM signups") == [("zed@gmial.com",)]


def one_recipient(received: Received, address: str) -> str:
    """The display name of the To header's only address, which must be `address`; fails on any
    other recipient header or a control character in any header."""
    head = received.data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ")
    assert not any(ord(c) < 32 for c in unfolded.replace("\r\n", "")), head
    assert not any(c in unfolded for c in "\u2028\u2029\u202e\x85")
    message = email.message_from_string(received.data.decode("utf-8"), policy=email.policy.default)
    assert message["Cc"] is None and message["Bcc"] is None
    assert len(message.get_all("To") or []) == 1
    (only,) = message["To"].addresses
    assert only.addr_spec == address
    return "".join(only.display_name.split())  # see test_message: encoded words and spaces


def squeezed(text: str) -> str:
    return "".join(text.split())


HOSTILE_NAMES = [
    "Eve <eve@evil.example>, x",
    '"a@b.c"',
    "=?utf-8?q?evil=40example.org?=",
    "Ann\r\nBcc: victim@example.net",
    "Ann\x00Bcc: victim@example.net",
    "Ann\u2028Bcc: victim@example.net",
    "x" * 500,
    "\u202eten.elpmaxe@live\u202c \u2066x\u2069",
]


def test_a_name_is_only_ever_a_display_name(project: Project) -> None:
    enable_signup(project)
    # An editor's file can hold any name too.
    project.write_subscribers(
        'ann@example.com,"Eve <eve@evil.example>, =?utf-8?q?x=40evil.example?="',
        "bob@example.com,Bob",
    )
    readers = {f"reader{n}@example.net": name for n, name in enumerate(HOSTILE_NAMES)}
    with serving(project, "--no-preview") as served:
        for address, name in readers.items():
            assert sign_up(served, address, name=name).status_code == 200
            (confirmation,) = wait_for_mail(project, address)
            assert one_recipient(confirmation, address) == squeezed(display_name(name))
            assert httpx.post(link_in(confirmation, "confirm", served), timeout=10).is_success
            welcome = wait_for_mail(project, address, 2)[1]
            assert one_recipient(welcome, address) == squeezed(display_name(name))
    # Control characters were dropped as the form was read: what is kept is the display name.
    kept = dict(rows(project, "SELECT email, name FROM signups"))
    assert kept == {address: display_name(name) for address, name in readers.items()}
    assert all(len(name) <= 100 and name.isprintable() for name in kept.values())
    assert project.run("send").exit_code == 0
    for address, name in readers.items():
        issue = wait_for_mail(project, address, 3)[2]
        assert one_recipient(issue, address) == squeezed(display_name(name))
    ann = project.smtp.to("ann@example.com")[0]
    assert one_recipient(ann, "ann@example.com") == squeezed(
        "Eve <eve@evil.example>, =?utf-8?q?x=40evil.example?="
    )


def test_non_ascii_addresses_are_confirmed_over_smtputf8(site: tuple[Project, Serving]) -> None:
    project, served = site
    answer = sign_up(served, "Zo\u00eb@B\u00fccher.example", name="=?utf-8?q?evil=40example.org?=")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    zoe = "zo\u00eb@xn--bcher-kva.example"  # canonical: lower-cased, the domain's A-label
    (confirmation,) = wait_for_mail(project, zoe)
    assert "SMTPUTF8" in confirmation.mail_options
    assert one_recipient(confirmation, zoe) == "=?utf-8?q?evil=40example.org?="
    assert rows(project, "SELECT email, status FROM signups") == [(zoe, "pending")]
    confirmed = httpx.post(link_in(confirmation, "confirm", served), timeout=10)
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    welcome = wait_for_mail(project, zoe, 2)[1]
    assert "SMTPUTF8" in welcome.mail_options
    # An internationalised domain with an ASCII local part needs no SMTPUTF8.
    assert sign_up(served, "erin@b\u00fccher.example").status_code == 200
    (erin,) = wait_for_mail(project, "erin@xn--bcher-kva.example")
    assert "SMTPUTF8" not in erin.mail_options
    assert project.run("send").exit_code == 0
    issue = wait_for_mail(project, zoe, 3)[2]
    assert "SMTPUTF8" in issue.mail_options
    assert one_recipient(issue, zoe) == "=?utf-8?q?evil=40example.org?="
    assert rows(project, "SELECT email, status FROM signups ORDER BY email") == [
        ("erin@xn--bcher-kva.example", "pending"),
        (zoe, "confirmed"),
    ]


def test_a_sign_up_whose_email_cannot_be_built_leaves_nothing_on_record(project: Project) -> None:
    enable_signup(project)
    config = load_config(project.config)
    request = signup.SignupRequest(
        "zoe@example.net", "Zoe", None, ip="127.0.0.1", page="", at=project.now
    )
    unusable = DkimKey("digest", "example.org", b"not a private key")
    with store.open(config) as state, pytest.raises(dkim.DKIMException):
        signup.act(config, state, SECRET, request, dkim_key=unusable)
    for table in ("signups", "consents", "rate_events", "outbox"):
        assert rows(project, f"SELECT COUNT(*) FROM {table}") == [(0,)], table


def test_a_confirmation_the_server_refuses_leaves_nothing_on_record(project: Project) -> None:
    # A mail server without SMTPUTF8 cannot take a non-ASCII address; this one also refuses
    # one recipient outright. Neither sign-up may leave a row, a consent or a used rate slot.
    with SmtpServer(smtputf8=False) as plain:
        project = replace(project, smtp=plain)
        project.write_config()
        enable_signup(project, "  per_ip_per_hour: 1\n")
        plain.script.reject["refused@example.net"] = "550 5.1.1 No such user"
        with serving(project, "--no-preview") as served:
            for address in ("zo\u00eb@example.net", "refused@example.net"):
                answer = sign_up(served, address, name="Zo\u00eb")
                assert answer.status_code == 200 and "Check your inbox" in answer.text
            # Sign-ups are carried out in turn, and the IP may have one an hour: this one gets
            # its email only if the two before used no slot.
            assert sign_up(served, "after@example.net").status_code == 200
            wait_for_mail(project, "after@example.net")
        assert [message.recipients for message in plain.received] == [("after@example.net",)]
    assert rows(project, "SELECT email FROM signups") == [("after@example.net",)]
    assert rows(project, "SELECT DISTINCT email FROM consents") == [("after@example.net",)]
    assert rows(project, "SELECT COUNT(*) FROM rate_events") == [(2,)]  # its address and IP


def test_any_value_in_the_honeypot_trips_it(site: tuple[Project, Serving]) -> None:
    project, served = site
    trapped = {
        "space@example.net": " ",
        "tab@example.net": "\t",
        "nbsp@example.net": "\u00a0",
        "second@example.net": ["", "http://spam.example"],
        "first@example.net": ["http://spam.example", ""],
        "blank@example.net": ["", " "],
    }
    honest = sign_up(served, "human@example.net", website="")
    answers = {sign_up(served, address, website=value).text for address, value in trapped.items()}
    assert answers == {honest.text}
    also_honest = sign_up(served, "second.human@example.net", website=["", ""])
    assert also_honest.text == honest.text
    # Sign-ups are carried out in turn: once the last has its email, the trapped ones are done.
    wait_for_mail(project, "second.human@example.net")
    assert all(project.smtp.to(address) == [] for address in trapped)
    assert rows(project, "SELECT email FROM signups ORDER BY email") == [
        ("human@example.net",),
        ("second.human@example.net",),
    ]


def test_no_link_in_any_email_shows_the_address(site: tuple[Project, Serving]) -> None:
    project, served = site
    readers = ["zoe.reader@example.net", "zo\u00eb@xn--bcher-kva.example"]
    for address in readers:
        assert sign_up(served, address, name="Zoe").status_code == 200
        (confirmation,) = wait_for_mail(project, address)
        assert httpx.post(link_in(confirmation, "confirm", served), timeout=10).is_success
        wait_for_mail(project, address, 2)
    assert project.run("send").exit_code == 0
    for address in [*readers, "ann@example.com"]:
        messages = wait_for_mail(project, address, 3 if address in readers else 1)
        for message in messages:
            urls = urls_in(message)
            assert urls, message.data[:300]
            for url in urls:
                assert not readable_in(url, address), (url, readable_in(url, address))
    # The one-click link in the issue's List-Unsubscribe header still works (RFC 8058).
    issue = project.smtp.to(readers[0])[2]
    header = str(issue.message["List-Unsubscribe"])
    (https,) = re.findall(r"<(https://[^>]+)>", header)
    answer = httpx.post(
        https.replace(PUBLIC, served.public),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert rows(project, "SELECT email, source FROM suppressions") == [(readers[0], "one-click")]


def test_the_answer_to_a_sign_up_looks_nothing_up(project: Project) -> None:
    # Not the state, and not the address cache either: a cached address would be answered
    # faster, telling that this process had seen it before.
    enable_signup(project)
    config = load_config(project.config)
    form = signup.SignupForm(email="Seen.Before@Example.net", sections=("From the blog",))
    canonical_address("seen.before@example.net")
    before = canonical_address.cache_info()
    outcome = signup.submit(config, form, ip="127.0.0.1", page="", now=project.now)
    assert outcome.request is not None and outcome.request.address == "seen.before@example.net"
    assert canonical_address.cache_info() == before
    assert not (project.root / "state.sqlite3").exists()


def test_a_sign_up_whose_confirmation_cannot_be_sent_is_kept_and_sent_later(
    project: Project,
) -> None:
    """The mail server turns every connection away: the reader gets the same answer as ever,
    nothing is lost (the confirmation waits in the outbox, the sign-up stays pending), and once
    the server takes mail again the next drain sends it."""
    from digest.readers import outbox

    enable_signup(project)
    project.smtp.script.refuse_connections = 10_000
    with serving(project, "--no-preview") as served:
        answer = sign_up(served, "kim@example.net")
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        deadline = time.monotonic() + 30
        while not rows(project, "SELECT 1 FROM outbox WHERE attempts > 0 AND claim = ''"):
            assert time.monotonic() < deadline, rows(project, "SELECT * FROM outbox")
            time.sleep(0.1)
    assert project.smtp.received == []
    assert rows(project, "SELECT email, status FROM signups") == [("kim@example.net", "pending")]
    assert "kim@example.net" not in served.stderr

    project.smtp.script.refuse_connections = 0
    config = load_config(project.config)
    drained = outbox.drain(
        config,
        lambda: store.open(config),
        outbox.send_by_smtp(config),
        lambda: project.now + timedelta(minutes=1),
    )
    assert drained == outbox.Drained(sent=1)
    (confirmation,) = project.smtp.to("kim@example.net")
    assert str(confirmation.message["Subject"]).startswith("Confirm your subscription")
    assert rows(project, "SELECT COUNT(*) FROM outbox") == [(0,)]


def test_links_and_forms_that_cannot_be_used_get_their_own_answer(
    site: tuple[Project, Serving],
) -> None:
    """An expired preferences link points to a newer issue; a confirmation link for an address
    with no sign-up waiting is refused as invalid; an oversized form is refused before it is
    read; a sign-up choosing no section is asked to choose one. Nothing is recorded."""
    project, served = site
    late = project.now - timedelta(seconds=1)
    expired = make_purpose_token(SECRET, "preferences", "ann@example.com", late)
    for method in ("GET", "POST"):
        answer = httpx.request(
            method, f"{served.public}/preferences", params={"token": expired}, timeout=10
        )
        assert answer.status_code == 400, method
        assert "This preferences link has expired. Nothing was changed." in answer.text
        assert "Use the link in a more recent issue." in answer.text

    unknown = make_purpose_token(
        SECRET, "confirm", "nobody@example.net", project.now + timedelta(days=1)
    )
    answer = httpx.post(f"{served.public}/confirm", params={"token": unknown}, timeout=10)
    assert answer.status_code == 400
    assert "This confirmation link is not valid" in answer.text

    big = {"padding": "x" * 20_000}
    good = make_purpose_token(
        SECRET, "preferences", "ann@example.com", project.now + timedelta(days=1)
    )
    for path, token in (("confirm", unknown), ("preferences", good)):
        answer = httpx.post(
            f"{served.public}/{path}", params={"token": token}, data=big, timeout=10
        )
        assert answer.status_code == 413, path

    answer = sign_up(served, "dee@example.net", section=[])
    assert answer.status_code == 400 and signup.CHOOSE_ONE in answer.text
    assert rows(project, "SELECT COUNT(*) FROM signups") == [(0,)]
    assert project.smtp.received == []
