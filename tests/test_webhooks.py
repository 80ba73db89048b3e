"""ESP webhooks on `digest serve`'s public app: signed, forged, replayed and unsigned requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Project
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
    with sqlite3.connect(project.root / "state.sqlite3") as db:
        return list(db.execute(sql))


def suppressed(project: Project) -> dict[str, str]:
    return {str(e): str(s) for e, s in rows(project, "SELECT email, source FROM suppressions")}


def report_count(project: Project) -> int:
    return int(rows(project, "SELECT COUNT(*) FROM bounce_reports")[0][0])  # type: ignore[call-overload]


@pytest.fixture
def served(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    project.config.write_text(
        project.config.read_text(encoding="utf-8")
        + "bounces:\n  webhooks:\n"
        + "    mailgun_signing_key: ${MAILGUN_KEY}\n"
        + f"    sendgrid_public_key: {SENDGRID_PUBLIC}\n"
        + f"    postmark_username: {POSTMARK[0]}\n"
        + "    postmark_password: ${POSTMARK_PASSWORD}\n",
        encoding="utf-8",
    )
    env = {"MAILGUN_KEY": MAILGUN_KEY, "POSTMARK_PASSWORD": POSTMARK[1]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert project.run("send").exit_code == 0
    with serving(project, "--no-preview", env=env) as running:
        yield running


def message_id(project: Project, address: str) -> str:
    return str(project.smtp.to(address)[0].message["Message-ID"])


def mailgun_body(
    project: Project, address: str, *, age: float = 0, key: str = MAILGUN_KEY
) -> dict[str, object]:
    timestamp = str(int((project.now - timedelta(seconds=age)).timestamp()))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
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
    again = httpx.post(url, json=good)  # the same delivery of the webhook, retried
    assert again.status_code == 200 and again.json() == {"duplicate": 1}
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
