"""Prometheus metrics (`metrics.listen`): a real `digest run` sending into a real SMTP server and
a real `digest serve` taking a sign-up, scraped over HTTP and parsed with prometheus-client's
own parser; the listener kept off the public app; mistakes refused with a clear error."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from digest.config.schema import ScheduleConfig, load_config
from digest.core import counters
from digest.metrics.gauges import StateCollector, next_slot
from tests.conftest import Project
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from tests.support.serving import serving
from tests.support.smtpserver import free_port
from tests.test_schedule_run import SLOT, SLOT_LOG, Daemon, weekly
from tests.test_signup import enable_signup, link_in, sign_up, wait_for_mail
from tests.test_unsubscribe_e2e import ONE_CLICK, unsubscribe_link
from tests.test_webhooks import ENV, POSTMARK, configure, postmark_event

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples]:
    """GET the metrics; their text and every sample, keyed by name and labels."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return answer.text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def label_values(samples: Samples) -> set[str]:
    return {text for _, labels in samples for _, text in labels}


def wait_for_sample(url: str, name: str, wanted: float, **labels: str) -> Samples:
    """Scrape until the sample has the wanted value (work in the background gets there)."""
    deadline = time.monotonic() + 20
    while True:
        _, samples = scrape(url)
        if value(samples, name, **labels) == wanted:
            return samples
        digest = {key: found for key, found in samples.items() if key[0].startswith(name)}
        assert time.monotonic() < deadline, f"{name}{labels} never {wanted}: {digest}"
        time.sleep(0.1)


@pytest.fixture
def metrics_port() -> Iterator[int]:
    yield free_port()


def test_a_real_send_is_counted_and_the_state_is_read_at_scrape_time(
    project: Project, metrics_port: int
) -> None:
    """Three subscribers, one slot fired by `digest run`: sent == 3, and the gauges say what
    the state says (readers, next slot, last send, each feed's last new post)."""
    weekly(project)
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text + f"metrics:\n  listen: 127.0.0.1:{metrics_port}\n", encoding="utf-8"
    )
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    started = SLOT + timedelta(hours=1)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with Daemon(project, started) as daemon:
        daemon.wait_for(f"{SLOT_LOG}: issue")
        # The counters are incremented before the issue is finished and logged: read at once.
        body, samples = scrape(url)
        assert daemon.terminate() == 0, daemon.log
    assert len(project.smtp.received) == 3
    assert value(samples, "digest_messages_total", outcome="sent") == 3
    assert value(samples, "digest_messages_total", outcome="failed") == 0
    assert value(samples, "digest_messages_total", outcome="deferred") == 0
    for feed in ("From the blog", "Latest news"):
        assert value(samples, "digest_feed_fetches_total", feed=feed, outcome="ok") == 1
        seen = value(samples, "digest_feed_last_new_post_timestamp_seconds", feed=feed)
        assert seen is not None and abs(seen - started.timestamp()) < 120
    assert value(samples, "digest_state_up") == 1
    assert value(samples, "digest_readers") == 3
    assert value(samples, "digest_deliveries_pending") == 0
    assert value(samples, "digest_outbox_messages") == 0
    assert value(samples, "digest_outbox_oldest_timestamp_seconds") is None  # empty outbox
    last_send = value(samples, "digest_last_successful_send_timestamp_seconds")
    assert last_send is not None and 0 <= last_send - started.timestamp() < 120
    # The slot sent, the next one the scheduler must handle is a week on.
    next_monday = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert value(samples, "digest_next_slot_timestamp_seconds") == next_monday.timestamp()
    assert value(samples, "digest_signups_total", outcome="queued") == 0
    # No address (nor anything with an @) in any label value, nor anywhere in the text.
    assert not [text for text in label_values(samples) if "@" in text]
    assert "example.com" not in body
    assert "metrics on http://127.0.0.1:" in daemon.log


def test_a_sign_up_and_its_confirmation_are_counted_by_serve(
    project: Project, metrics_port: int
) -> None:
    """A sign-up POST to a real `digest serve` counts one sign-up, its confirmation one
    confirmation; the metrics answer on their own port only (the public app: 404)."""
    enable_signup(project)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with serving(
        project, "--no-preview", "--metrics-listen", f"127.0.0.1:{metrics_port}"
    ) as served:
        _, before = scrape(url)
        assert value(before, "digest_signups_total", outcome="queued") == 0
        assert value(before, "digest_confirmations_total") == 0
        assert value(before, "digest_readers") == 2
        assert sign_up(served, "zoe@example.net", name="Zoe").status_code == 200
        wait_for_sample(url, "digest_signups_total", 1, outcome="queued")
        (confirmation,) = wait_for_mail(project, "zoe@example.net")
        confirmed = httpx.post(link_in(confirmation, "confirm", served), timeout=10)
        assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
        samples = wait_for_sample(url, "digest_confirmations_total", 1)
        # The reader counts at once: the gauges' cache is a few seconds at most.
        samples = wait_for_sample(url, "digest_readers", 3)
        assert value(samples, "digest_signups_total", outcome="rate_limited") == 0
        assert not [text for text in label_values(samples) if "@" in text]
        public = httpx.get(f"{served.public}/metrics", timeout=10)
        assert public.status_code == 404
        assert "digest_" not in public.text
        # The metrics port serves the metrics and nothing else.
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/", timeout=10).status_code == 404
        assert (
            httpx.get(f"http://127.0.0.1:{metrics_port}/unsubscribe", timeout=10).status_code == 404
        )
    assert "metrics: http://127.0.0.1:" in served.stdout


def test_bounces_complaints_webhooks_and_unsubscribes_are_counted(
    project: Project, metrics_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real `digest serve`: a Postmark hard bounce, a complaint, a replayed and a
    forged request, and a one-click unsubscribe, each counted under its kind and outcome."""
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    configure(project, monkeypatch)  # the providers configured, issue 1 sent to all three
    listen = f"127.0.0.1:{metrics_port}"
    url = f"http://{listen}/metrics"
    with serving(project, "--no-preview", "--metrics-listen", listen, env=ENV) as served:
        hook = f"{served.public}/webhooks/postmark"
        bounce = postmark_event(project, "ann@example.com")
        assert httpx.post(hook, json=bounce, auth=POSTMARK).status_code == 200
        assert httpx.post(hook, json=bounce, auth=POSTMARK).status_code == 401  # replayed
        complaint = postmark_event(
            project, "bob@example.com", RecordType="SpamComplaint", Type="SpamComplaint"
        )
        assert httpx.post(hook, json=complaint, auth=POSTMARK).status_code == 200
        assert httpx.post(hook, json=complaint, auth=("postmark", "wrong")).status_code == 401
        assert httpx.post(hook, content=b"{", auth=POSTMARK).status_code == 400
        link = unsubscribe_link(project, "cy@example.com", served.public)
        answer = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200
        again = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert again.status_code == 200  # already unsubscribed: not counted twice
        samples = wait_for_sample(url, "digest_readers", 0)
    assert value(samples, "digest_bounces_total", kind="hard", outcome="suppressed") == 1
    assert value(samples, "digest_bounces_total", kind="soft", outcome="counted") == 0
    assert value(samples, "digest_complaints_total", outcome="suppressed") == 1
    webhooks = {
        outcome: value(
            samples, "digest_webhook_requests_total", provider="postmark", outcome=outcome
        )
        for outcome in ("accepted", "refused", "malformed")
    }
    assert webhooks == {"accepted": 2, "refused": 2, "malformed": 1}
    assert (
        value(samples, "digest_webhook_requests_total", provider="mailgun", outcome="accepted") == 0
    )
    assert value(samples, "digest_unsubscribes_total", source="one-click") == 1
    assert value(samples, "digest_unsubscribes_total", source="web") == 0
    assert not [text for text in label_values(samples) if "@" in text]


def test_a_taken_port_is_refused_with_the_reason_before_any_work(project: Project) -> None:
    weekly(project)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = project.run_process("run", "--metrics-listen", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.smtp.received == []


def test_a_wrong_listen_address_names_file_line_and_key(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text + "metrics:\n  listen: localhost\n", encoding="utf-8")
    line = text.count("\n") + 2
    result = project.run("check")
    assert result.exit_code == 2
    assert f"config.yaml:{line}: metrics.listen: expected host:port such as 127.0.0.1:9464" in (
        result.output
    )
    given = project.run_process("run", "--metrics-listen", "127.0.0.1:99999")
    assert given.returncode == 2 and "Invalid value for '--metrics-listen'" in given.stderr
    assert "Traceback" not in given.stderr


def test_the_next_slot_is_the_first_after_the_last_one_handled() -> None:
    """A slot nobody handled stays the next slot, in the past, which is what the "send
    missed" alert looks for; with none recorded yet, the next slot from now."""
    schedule = ScheduleConfig(day="monday", time="08:00", timezone="Europe/London")
    now = SLOT + timedelta(days=10)
    assert next_slot(schedule, SLOT.isoformat(), now) == datetime(2026, 12, 7, 8, tzinfo=UTC)
    assert next_slot(schedule, None, now) == datetime(2026, 12, 14, 8, tzinfo=UTC)
    assert next_slot(None, SLOT.isoformat(), now) is None


def gauges(collector: StateCollector) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_the_gauges_are_read_once_per_cache_period(project: Project) -> None:
    """A scrape storm reads the state once per period: within it the reading is kept, after it
    the state (here a new subscriber in the file) is read again."""
    config = load_config(project.config)
    ticks = [100.0]
    collector = StateCollector(
        config, lambda: project.now, cache_seconds=5, monotonic=lambda: ticks[0]
    )
    assert value(gauges(collector), "digest_readers") == 2
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    ticks[0] = 104.0
    assert value(gauges(collector), "digest_readers") == 2
    ticks[0] = 105.0
    assert value(gauges(collector), "digest_readers") == 3


def test_an_unreadable_state_is_reported_not_raised(project: Project) -> None:
    """The state cannot be read (here: a folder where the file should be): digest_state_up is
    0, the other gauges are left out, and the scrape still answers."""
    (project.root / "state.sqlite3").mkdir()
    collector = StateCollector(load_config(project.config), lambda: project.now)
    samples = gauges(collector)
    assert value(samples, "digest_state_up") == 0
    assert value(samples, "digest_readers") is None


def test_a_new_state_without_a_secret_is_read_not_refused(project: Project) -> None:
    """Before the first send there is no state (and no signing secret in it): the gauges read
    it as empty, without writing anything, and say the state is up."""
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("secret: test-secret\n", ""), encoding="utf-8")
    collector = StateCollector(load_config(project.config), lambda: project.now)
    samples = gauges(collector)
    assert value(samples, "digest_state_up") == 1
    assert value(samples, "digest_readers") == 2
    assert value(samples, "digest_last_successful_send_timestamp_seconds") is None
    assert not (project.root / "state.sqlite3").exists()


def test_every_replica_reports_the_same_state(
    project: Project, request: pytest.FixtureRequest
) -> None:
    """Two `digest serve` replicas on one PostgreSQL state: a reader unsubscribes through one,
    and both report the same readers and last send, read from the state at scrape time."""
    url: str = request.getfixturevalue("postgres_url")
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        config.replace("state: state.sqlite3", f"state: {url}"), encoding="utf-8"
    )
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    assert project.run_process("send").returncode == 0
    ports = free_port(), free_port()
    metrics = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    with (
        serving(project, "--no-preview", "--metrics-listen", f"127.0.0.1:{ports[0]}") as first,
        serving(project, "--no-preview", "--metrics-listen", f"127.0.0.1:{ports[1]}"),
    ):
        link = unsubscribe_link(project, "ann@example.com", first.public)
        answer = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200
        readings = [wait_for_sample(address, "digest_readers", 2) for address in metrics]
    sent = [value(found, "digest_last_successful_send_timestamp_seconds") for found in readings]
    assert sent[0] is not None and sent[0] == sent[1]
    assert [value(found, "digest_state_up") for found in readings] == [1, 1]
    # The unsubscribe is counted by the replica that took it only.
    counted = [value(found, "digest_unsubscribes_total", source="one-click") for found in readings]
    assert counted == [1, 0]


def test_a_label_takes_only_its_listed_values() -> None:
    """Whatever reaches a counter, a label carries one of its listed values or "other" (a
    feed's configured name is the one free label)."""
    spec = counters.WEBHOOK_REQUESTS
    assert spec.label_values({"provider": "postmark", "outcome": "accepted"}) == (
        "postmark",
        "accepted",
    )
    assert spec.label_values({"provider": "ann@example.com", "outcome": "x"}) == ("other", "other")
    with pytest.raises(ValueError, match="takes labels"):
        spec.label_values({"provider": "postmark"})
    fetches = counters.FEED_FETCHES.label_values({"feed": "From the blog", "outcome": "ok"})
    assert fetches == ("From the blog", "ok")
    assert counters.FEED_FETCHES.initial() == []  # a free label: created when first counted
    assert len(counters.BOUNCES.initial()) == 2 * len(counters.REPORT_OUTCOMES)


def test_with_metrics_off_nothing_of_prometheus_is_loaded() -> None:
    """Counting is free while metrics are off: a send, the public app and the scheduler load
    their modules without prometheus_client, and a count is a no-op."""
    code = (
        "import sys\n"
        "import digest.run.send, digest.run.schedule, digest.web.public, digest.feeds.collect\n"
        "from digest.core import counters\n"
        "counters.count(counters.MESSAGES, outcome='sent')\n"
        "assert not counters.enabled()\n"
        "assert not [m for m in sys.modules if m.startswith('prometheus_client')], 'loaded'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
