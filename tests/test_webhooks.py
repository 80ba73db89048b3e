"""ESP webhooks on `digest serve`'s public app: signed, forged, replayed and unsigned requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx works the same for these tests.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from digest import store
from digest.store import sqlite as store_sqlite
from digest.web.public import PublicSite, create_public_app
from digest.web.webhooks import UNAUTHORISED, WEBHOOK_BODY_BYTES, NotJson, read_json
from tests.conftest import Project
from tests.support import statefile
from tests.support.serving import Serving, serving

MAILGUN_KEY = "mailgun-signing-key-for-tests"
POSTMARK = ("postmark", "postmark-test-password")
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def suppressed(project: Project) -> dict[str, str]:
    return {str(e): str(s) for e, s in rows(project, "SELECT email, source FROM suppressions")}


def report_count(project: Project) -> int:
    return int(rows(project, "SELECT COUNT(*) FROM bounce_reports")[0][0])  # type: ignore[call-overload]


ENV = {"MAILGUN_KEY": MAILGUN_KEY, "POSTMARK_PASSWORD": POSTMARK[1]}


def configure(project: Project, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> None:
    """All three providers configured (plus `extra` webhook settings); issue 1 sent."""
    project.config.write_text(
        project.config.read_text(encoding="utf-8")
        + "bounces:\n  webhooks:\n"
        + "    mailgun_signing_key: ${MAILGUN_KEY}\n"
        + f"    sendgrid_public_key: {SENDGRID_PUBLIC}\n"
        + f"    postmark_username: {POSTMARK[0]}\n"
        + "    postmark_password: ${POSTMARK_PASSWORD}\n"
        + extra,
        encoding="utf-8",
    )
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert project.run("send").exit_code == 0


@pytest.fixture
def served(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    configure(project, monkeypatch)
    with serving(project, "--no-preview", env=ENV) as running:
        yield running


def message_id(project: Project, address: str) -> str:
    return str(project.smtp.to(address)[0].message["Message-ID"])


def signed(key: str, when: datetime) -> dict[str, str]:
    """A Mailgun signature block: a fresh token, signed with `key` at `when`."""
    timestamp = str(int(when.timestamp()))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature}


def mailgun_body(
    project: Project, address: str, *, age: float = 0, key: str = MAILGUN_KEY
) -> dict[str, object]:
    return {
        "signature": signed(key, project.now - timedelta(seconds=age)),
        "event-data": {
            "id": secrets.token_hex(8),
            "event": "failed",
            "severity": "permanent",
            "recipient": address,
            "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "No such user"},
            "message": {"headers": {"message-id": message_id(project, address).strip("<>")}},
        },
    }


def test_mailgun_signed_forged_replayed_and_unsigned(project: Project, served: Serving) -> None:
    url = f"{served.public}/webhooks/mailgun"
    forged = mailgun_body(project, "ann@example.com", key="not-the-key")
    assert httpx.post(url, json=forged).status_code == 401
    replayed = mailgun_body(project, "ann@example.com", age=3600)
    assert httpx.post(url, json=replayed).status_code == 401
    unsigned = mailgun_body(project, "ann@example.com")
    del unsigned["signature"]
    assert httpx.post(url, json=unsigned).status_code == 401
    assert httpx.post(url, content=b"not json").status_code == 401
    assert report_count(project) == 0 and suppressed(project) == {}

    good = mailgun_body(project, "ann@example.com")
    answer = httpx.post(url, json=good)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"suppressed": 1}
    again = httpx.post(url, json=good)  # the same signed request, a second time
    assert again.status_code == 401 and "Replayed request" in again.text
    retried = {**good, "signature": signed(MAILGUN_KEY, project.now)}  # a retry, signed afresh
    answer = httpx.post(url, json=retried)
    assert answer.status_code == 200 and answer.json() == {"duplicate": 1}
    assert suppressed(project) == {"ann@example.com": "bounce"}
    assert report_count(project) == 1


def sendgrid_post(
    url: str, events: list[dict[str, object]], timestamp: str, key: ec.EllipticCurvePrivateKey
) -> httpx.Response:
    body = json.dumps(events).encode()
    signature = base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256())))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": signature.decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return httpx.post(url, content=body, headers=headers)


def test_sendgrid_signed_forged_replayed_and_unsigned(project: Project, served: Serving) -> None:
    url = f"{served.public}/webhooks/sendgrid"
    now = str(int(project.now.timestamp()))
    events: list[dict[str, object]] = [
        {
            "email": "bob@example.com",
            "event": "spamreport",
            "sg_event_id": secrets.token_hex(8),
            "smtp-id": message_id(project, "bob@example.com"),
            "timestamp": int(now),
        },
        {
            "email": "stranger@example.net",
            "event": "bounce",
            "status": "5.1.1",
            "sg_event_id": "x1",
        },
        {"email": "ann@example.com", "event": "delivered", "sg_event_id": "x2"},
    ]
    other = ec.generate_private_key(ec.SECP256R1())
    assert sendgrid_post(url, events, now, other).status_code == 401
    old = str(int((project.now - timedelta(hours=1)).timestamp()))
    assert sendgrid_post(url, events, old, SENDGRID_KEY).status_code == 401
    assert httpx.post(url, json=events).status_code == 401
    assert report_count(project) == 0

    answer = sendgrid_post(url, events, now, SENDGRID_KEY)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"suppressed": 1, "forged": 1}
    assert suppressed(project) == {"bob@example.com": "complaint"}


def test_postmark_basic_auth_and_stale_events(project: Project, served: Serving) -> None:
    url = f"{served.public}/webhooks/postmark"
    event = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "Email": "ann@example.com",
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "BouncedAt": project.now.isoformat().replace("+00:00", "Z"),
    }
    assert httpx.post(url, json=event).status_code == 401
    assert httpx.post(url, json=event, auth=(POSTMARK[0], "wrong")).status_code == 401
    stale = {**event, "BouncedAt": (project.now - timedelta(days=3)).isoformat()}
    assert httpx.post(url, json=stale, auth=POSTMARK).status_code == 401
    assert report_count(project) == 0

    answer = httpx.post(url, json=event, auth=POSTMARK)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"suppressed": 1}
    assert suppressed(project) == {"ann@example.com": "bounce"}


def test_an_unconfigured_provider_has_no_route(project: Project) -> None:
    assert project.run("send").exit_code == 0
    with serving(project, "--no-preview") as running:
        answer = httpx.post(f"{running.public}/webhooks/mailgun", json={})
    assert answer.status_code == 404


def reports(project: Project) -> list[tuple[str, str, str]]:
    """(key, outcome, email) of every recorded report, in order."""
    found = rows(project, "SELECT report_key, outcome, email FROM bounce_reports ORDER BY id")
    return [(str(k), str(o), str(e)) for k, o, e in found]


def test_a_captured_mailgun_signature_cannot_carry_other_events(
    project: Project, served: Serving
) -> None:
    """Mailgun signs the timestamp and token only: re-posting a captured signature with another
    reader's event must not suppress them, however the event is dressed up."""
    url = f"{served.public}/webhooks/mailgun"
    captured = mailgun_body(project, "ann@example.com")
    assert httpx.post(url, json=captured).json() == {"suppressed": 1}
    other = mailgun_body(project, "bob@example.com")["event-data"]
    assert isinstance(other, dict)
    for event in (other, {**other, "id": None}):
        answer = httpx.post(url, json={"signature": captured["signature"], "event-data": event})
        assert answer.status_code == 401, answer.text
        assert "Replayed request" in answer.text
    assert suppressed(project) == {"ann@example.com": "bounce"}
    assert report_count(project) == 1


def test_a_sendgrid_request_is_accepted_once_whatever_its_signature_encoding(
    project: Project, served: Serving
) -> None:
    """SendGrid signs timestamp + body; a replay of the same bytes is refused, even with the
    other valid ECDSA signature of them (s -> n - s), which a signature-keyed check would miss."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    url = f"{served.public}/webhooks/sendgrid"
    now = str(int(project.now.timestamp()))
    events: list[dict[str, object]] = [
        {
            "email": "bob@example.com",
            "event": "bounce",
            "status": "5.1.1",
            "sg_event_id": secrets.token_hex(8),
            "smtp-id": message_id(project, "bob@example.com"),
        }
    ]
    body = json.dumps(events).encode()
    signature = SENDGRID_KEY.sign(now.encode() + body, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(signature)
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = encode_dss_signature(r, order - s)

    def post(raw: bytes) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(raw).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": now,
        }
        return httpx.post(url, content=body, headers=headers)

    first = post(signature)
    assert first.status_code == 200 and first.json() == {"suppressed": 1}
    for raw in (signature, twin):
        again = post(raw)
        assert again.status_code == 401 and "Replayed request" in again.text
    assert report_count(project) == 1
    assert suppressed(project) == {"bob@example.com": "bounce"}


def postmark_event(project: Project, address: str, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "RecordType": "Bounce",
        "ID": secrets.randbelow(10**15),
        "Type": "HardBounce",
        "Email": address,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "BouncedAt": project.now.isoformat().replace("+00:00", "Z"),
    }
    return {**event, **changes}


def test_a_postmark_event_is_accepted_once_and_never_from_the_future(
    project: Project, served: Serving
) -> None:
    url = f"{served.public}/webhooks/postmark"
    event = postmark_event(project, "ann@example.com")
    assert httpx.post(url, json=event, auth=POSTMARK).json() == {"suppressed": 1}
    replays = [event, {**event, "Email": "bob@example.com"}]
    for replay in replays:
        answer = httpx.post(url, json=replay, auth=POSTMARK)
        assert answer.status_code == 401 and "Replayed request" in answer.text
    ahead = (project.now + timedelta(minutes=10)).isoformat()
    future = postmark_event(project, "bob@example.com", BouncedAt=ahead)
    answer = httpx.post(url, json=future, auth=POSTMARK)
    assert answer.status_code == 401 and "dated in the future" in answer.text
    no_id = postmark_event(project, "bob@example.com", ID=None)
    answer = httpx.post(url, json=no_id, auth=POSTMARK)
    assert answer.status_code == 400 and "ID" in answer.text
    assert suppressed(project) == {"ann@example.com": "bounce"}
    assert report_count(project) == 1
    # A little clock skew is no replay: a minute ahead is accepted.
    skewed = postmark_event(
        project, "bob@example.com", BouncedAt=(project.now + timedelta(minutes=1)).isoformat()
    )
    assert httpx.post(url, json=skewed, auth=POSTMARK).json() == {"suppressed": 1}


def test_signed_timestamps_ahead_of_the_clock_are_refused(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a long max_age, a timestamp half an hour ahead used to pass `abs(age) <= max_age`
    and so stay valid for an hour and a half; beyond five minutes of skew it is refused."""
    configure(project, monkeypatch, "    max_age: 3600\n")
    ahead = project.now + timedelta(minutes=30)
    with serving(project, "--no-preview", env=ENV) as served:
        body = mailgun_body(project, "ann@example.com")
        body["signature"] = signed(MAILGUN_KEY, ahead)
        answer = httpx.post(f"{served.public}/webhooks/mailgun", json=body)
        assert answer.status_code == 401 and "dated in the future" in answer.text
        events: list[dict[str, object]] = [
            {"email": "bob@example.com", "event": "spamreport", "sg_event_id": "f1"}
        ]
        later = str(int(ahead.timestamp()))
        answer = sendgrid_post(f"{served.public}/webhooks/sendgrid", events, later, SENDGRID_KEY)
        assert answer.status_code == 401 and "dated in the future" in answer.text
        near = str(int((project.now + timedelta(minutes=2)).timestamp()))
        answer = sendgrid_post(f"{served.public}/webhooks/sendgrid", events, near, SENDGRID_KEY)
        assert answer.status_code == 200 and answer.json() == {"suppressed": 1}
    assert suppressed(project) == {"bob@example.com": "complaint"}


def sendgrid_raw(url: str, body: bytes, timestamp: str) -> httpx.Response:
    signature = base64.b64encode(
        SENDGRID_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    )
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": signature.decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return httpx.post(url, content=body, headers=headers)


def test_hostile_json_is_a_clear_refusal_never_a_crash(project: Project, served: Serving) -> None:
    now = str(int(project.now.timestamp()))
    deep = b"[" * 100_000
    nested = b"[" * 100 + b"]" * 100  # valid JSON, deeper than any provider sends
    for body in (deep, nested, b"\xff\xfe[]", b'[{"a": "\\ud800"'):
        answer = httpx.post(f"{served.public}/webhooks/mailgun", content=body)
        assert answer.status_code == 401, (body[:20], answer.text)
        answer = sendgrid_raw(f"{served.public}/webhooks/sendgrid", body, now)
        assert answer.status_code == 400, (body[:20], answer.text)
        assert answer.text.startswith("Expected a JSON list of events")
        answer = httpx.post(f"{served.public}/webhooks/postmark", content=body, auth=POSTMARK)
        assert answer.status_code == 400, (body[:20], answer.text)
        assert answer.text.startswith("Expected a JSON object")
    # Deep data inside a string is only text.
    inside = json.dumps([{"event": "delivered", "note": "[" * 50_000}]).encode()
    answer = sendgrid_raw(f"{served.public}/webhooks/sendgrid", inside, now)
    assert answer.status_code == 200 and answer.json() == {}
    assert report_count(project) == 0


def test_odd_text_in_signed_fields_is_refused_or_kept_never_a_crash(
    project: Project, served: Serving
) -> None:
    # A Mailgun signature that is not even ASCII is simply wrong.
    body = mailgun_body(project, "ann@example.com")
    body["signature"] = {**signed(MAILGUN_KEY, project.now), "signature": "é" * 64}
    assert httpx.post(f"{served.public}/webhooks/mailgun", json=body).status_code == 401
    # Lone surrogates, which JSON allows, in the fields that are recorded.
    event = postmark_event(project, "\ud800@example.com", Description="\udc00 bad", ID="p1")
    raw = json.dumps(event).encode()
    answer = httpx.post(f"{served.public}/webhooks/postmark", content=raw, auth=POSTMARK)
    assert answer.status_code == 200 and answer.json() == {"forged": 1}
    assert report_count(project) == 1 and suppressed(project) == {}


def test_only_a_real_address_is_recorded_as_the_recipient(
    project: Project, served: Serving
) -> None:
    url = f"{served.public}/webhooks/sendgrid"
    now = str(int(project.now.timestamp()))
    junk = ["@", "ann@example.com|bob@example.com", '{"email": "ann@example.com"}', "a@b@c"]
    events: list[dict[str, object]] = [
        {"email": value, "event": "bounce", "status": "5.1.1", "sg_event_id": f"j{n}"}
        for n, value in enumerate(junk)
    ]
    events.append(
        {"email": " Bob@EXAMPLE.com ", "event": "bounce", "status": "5.1.1", "sg_event_id": "b"}
    )
    answer = sendgrid_post(url, events, now, SENDGRID_KEY)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"forged": 4, "suppressed": 1}
    assert reports(project) == [
        ("sendgrid:j0", "forged", ""),
        ("sendgrid:j1", "forged", ""),
        ("sendgrid:j2", "forged", ""),
        ("sendgrid:j3", "forged", ""),
        ("sendgrid:b", "suppressed", "bob@example.com"),
    ]
    assert suppressed(project) == {"bob@example.com": "bounce"}


def test_a_request_that_fails_half_way_does_not_use_up_its_signature(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nonce is written in the same transaction as the events: when the state file is busy
    the provider is told to try again (503), and its retry of the same request is accepted."""
    configure(project, monkeypatch)
    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT", 0.2)
    site = PublicSite(project.config, lambda: project.now)
    body = mailgun_body(project, "ann@example.com")
    with TestClient(create_public_app(site)) as client:
        with statefile.connect(project.root / "state.sqlite3", autocommit=True) as holder:
            holder.execute("BEGIN IMMEDIATE")  # another process is writing
            try:
                busy = client.post("/webhooks/mailgun", json=body)
            finally:
                holder.execute("ROLLBACK")
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "60" and "nothing was recorded" in busy.text
        assert report_count(project) == 0
        retried = client.post("/webhooks/mailgun", json=body)
        assert retried.status_code == 200 and retried.json() == {"suppressed": 1}
        assert client.post("/webhooks/mailgun", json=body).status_code == 401
    assert suppressed(project) == {"ann@example.com": "bounce"}


def test_nonces_are_kept_for_the_window_then_pruned(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    keep = timedelta(minutes=10)
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    with store.open_path(path) as state:
        nonces = state.webhook_nonces
        assert nonces.remember("mailgun", "a", start, keep)
        assert not nonces.remember("mailgun", "a", start + timedelta(minutes=9), keep)
        assert nonces.remember("sendgrid", "a", start, keep)  # each provider its own
        with pytest.raises(RuntimeError), state.transaction():
            assert nonces.remember("mailgun", "b", start, keep)
            raise RuntimeError("the events could not be recorded")
        assert nonces.remember("mailgun", "b", start, keep)  # rolled back: not used up
        later = start + timedelta(minutes=11)
        assert nonces.remember("mailgun", "c", later, keep)
        assert nonces.count("mailgun") == 1  # a and b pruned once older than the window
        assert nonces.count("sendgrid") == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b"{" * 100_000,
        b"[" * 65 + b"]" * 65,  # valid, but deeper than any provider sends
        b'{"a":' * 200 + b"1" + b"}" * 200,
        b"[}",
        b"[[]",
        b'["unterminated ]]]',
        b'["\\"]]',  # the string ends after the escaped backslash: one "]" too many
        b"\xff[]",
        b"",
    ],
)
def test_read_json_refuses_what_it_will_not_parse(body: bytes) -> None:
    with pytest.raises(NotJson):
        read_json(body)


def test_read_json_reads_what_providers_send() -> None:
    nested: list[object] = []
    for _ in range(31):
        nested = [nested]
    assert read_json(b"[" * 32 + b"]" * 32) == nested
    assert read_json(b'[{"a": "[[[{{{\\"\\\\", "b": {"c": ["]"]}}]') == [
        {"a": '[[[{{{"\\', "b": {"c": ["]"]}}
    ]
    wide = b"[" + b",".join([b'{"event": "bounce", "x": [[1], [2]]}'] * 20_000) + b"]"
    assert len(read_json(wide)) == 20_000


def mailgun_signed(project: Project, event: object, **signature: str) -> dict[str, object]:
    """A Mailgun body signed now (with `signature`'s fields put over the real ones) carrying
    `event` as its event data, whatever its type."""
    return {"signature": {**signed(MAILGUN_KEY, project.now), **signature}, "event-data": event}


def test_bodies_that_are_not_the_object_a_provider_sends_are_refused_or_ignored(
    project: Project, served: Serving
) -> None:
    """Valid JSON of the wrong shape: refused (401 where the signature is inside the body, 400
    once authenticated), or, for event data of the wrong type inside a signed request, taken
    as no event. Nothing is recorded, and nothing crashes."""
    now = str(int(project.now.timestamp()))
    mailgun = f"{served.public}/webhooks/mailgun"
    sendgrid = f"{served.public}/webhooks/sendgrid"
    postmark = f"{served.public}/webhooks/postmark"
    for shape in ([], "text", 42, None, {"signature": ["a list"]}, {"event-data": {}}):
        answer = httpx.post(mailgun, content=json.dumps(shape).encode())
        assert answer.status_code == 401 and answer.text == UNAUTHORISED, shape
    for event in ([], "text", 42, None):
        answer = httpx.post(mailgun, json=mailgun_signed(project, event))
        assert answer.status_code == 200 and answer.json() == {}, (event, answer.text)
    # Its parts of the wrong type name nothing digest sent: a report kept as forged.
    odd_parts = {"id": "m0", "event": "failed", "delivery-status": "x", "message": 1}
    answer = httpx.post(mailgun, json=mailgun_signed(project, odd_parts))
    assert answer.status_code == 200 and answer.json() == {"forged": 1}, answer.text
    for shape in ({}, {"event": "bounce"}, "text", 42, None):
        answer = sendgrid_raw(sendgrid, json.dumps(shape).encode(), now)
        assert answer.status_code == 400, (shape, answer.text)
        assert answer.text == "Expected a JSON list of events.\n"
    answer = sendgrid_raw(sendgrid, json.dumps([[], "text", 42, None]).encode(), now)
    assert answer.status_code == 200 and answer.json() == {}
    for shape in ([], [{"RecordType": "Bounce"}], "text", 42, None):
        answer = httpx.post(postmark, content=json.dumps(shape).encode(), auth=POSTMARK)
        assert answer.status_code == 400, (shape, answer.text)
        assert answer.text == "Expected a JSON object.\n"
    for when in (None, 1764489600, "x" * 100, "last Tuesday", []):
        event = postmark_event(project, "ann@example.com", BouncedAt=when)
        answer = httpx.post(postmark, json=event, auth=POSTMARK)
        assert answer.status_code == 401, (when, answer.text)
        assert "the event has no readable time" in answer.text
    assert report_count(project) == 1 and suppressed(project) == {}


def test_a_body_over_the_limit_or_a_broken_login_is_refused_unread(
    project: Project, served: Serving
) -> None:
    big = b"[" + b" " * WEBHOOK_BODY_BYTES + b"]"
    now = str(int(project.now.timestamp()))
    for answer in (
        httpx.post(f"{served.public}/webhooks/mailgun", content=big),
        sendgrid_raw(f"{served.public}/webhooks/sendgrid", big, now),
        httpx.post(f"{served.public}/webhooks/postmark", content=big, auth=POSTMARK),
    ):
        assert answer.status_code == 413 and answer.text == "Request body too large.\n"
    event = json.dumps(postmark_event(project, "ann@example.com")).encode()
    for header in ("Basic !!!not-base64", "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):
        answer = httpx.post(
            f"{served.public}/webhooks/postmark", content=event, headers={"Authorization": header}
        )
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Basic"
    assert report_count(project) == 0


def test_every_kind_of_event_is_read_as_its_provider_means_it(
    project: Project, served: Serving
) -> None:
    """Complaints, deferrals and soft bounces from each provider; events digest does not act on
    are accepted and recorded as nothing; a signed timestamp or token that is not one is
    refused."""
    mailgun = f"{served.public}/webhooks/mailgun"
    complained = mailgun_signed(
        project,
        {"id": "m1", "event": "complained", "recipient": "ann@example.com"},
    )
    assert httpx.post(mailgun, json=complained).json() == {"suppressed": 1}
    delivered = mailgun_signed(project, {"id": "m2", "event": "delivered", "recipient": "x@y.z"})
    assert httpx.post(mailgun, json=delivered).json() == {}
    for odd in ({"timestamp": "soon"}, {"token": "t" * 600}, {"token": ""}):
        body = mailgun_signed(project, {"id": "m3", "event": "complained"}, **odd)
        signature = body["signature"]
        assert isinstance(signature, dict)
        signature["signature"] = hmac.new(
            MAILGUN_KEY.encode(),
            (signature["timestamp"] + signature["token"]).encode(),
            hashlib.sha256,
        ).hexdigest()
        answer = httpx.post(mailgun, json=body)
        assert answer.status_code == 401, (odd, answer.text)

    now = str(int(project.now.timestamp()))
    deferred = [{"email": "bob@example.com", "event": "deferred", "sg_event_id": "d1"}]
    answer = sendgrid_post(f"{served.public}/webhooks/sendgrid", deferred, now, SENDGRID_KEY)
    assert answer.status_code == 200 and "suppressed" not in answer.json(), answer.text

    postmark = f"{served.public}/webhooks/postmark"
    bob_id = message_id(project, "bob@example.com")
    soft = postmark_event(
        project, "bob@example.com", Type="SoftBounce", ID="s1", Content=f"Message-ID: {bob_id}"
    )
    answer = httpx.post(postmark, json=soft, auth=POSTMARK)
    assert answer.status_code == 200 and "suppressed" not in answer.json(), answer.text
    away = postmark_event(project, "bob@example.com", Type="AutoResponder", ID="s2")
    assert httpx.post(postmark, json=away, auth=POSTMARK).json() == {}
    opened = postmark_event(project, "bob@example.com", RecordType="Open", ID=None)
    assert httpx.post(postmark, json=opened, auth=POSTMARK).json() == {}
    spam = postmark_event(
        project, "bob@example.com", RecordType="SpamComplaint", Type="SpamComplaint", ID="s3"
    )
    assert httpx.post(postmark, json=spam, auth=POSTMARK).json() == {"suppressed": 1}
    assert suppressed(project) == {"ann@example.com": "complaint", "bob@example.com": "complaint"}
