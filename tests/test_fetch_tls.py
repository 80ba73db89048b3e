"""Feeds over HTTPS: certificates are verified, and the trust store is read only when needed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from digest.config.schema import FetchConfig
from digest.core.models import FetchStatus
from digest.feeds.collect import collect
from digest.feeds.fetch import feed_tls_context, fetch_url, make_client
from tests.support.feedserver import FeedServer
from tests.support.smtpserver import self_signed_certificate
from tests.test_collect import NOW, feed_body, feeds_for


def test_a_feed_behind_an_untrusted_certificate_is_named_and_skipped(tmp_path: Path) -> None:
    certificate = self_signed_certificate(tmp_path)
    with FeedServer(certificate=certificate) as secure, FeedServer() as plain:
        untrusted = secure.add("/feed.xml", feed_body("Untrusted post"))
        fine = plain.add("/feed.xml", feed_body("Fine post"))
        results = collect(feeds_for(untrusted, fine), FetchConfig(timeout=5), tmp_path, {}, NOW)
    assert untrusted.startswith("https://")
    assert results[0].status is FetchStatus.FAILED
    assert results[0].error == (
        "the site's certificate could not be verified (self-signed certificate);"
        " its owner needs to fix its HTTPS setup"
    )
    assert "\n" not in (results[0].error or "")
    assert results[1].status is FetchStatus.OK
    assert [post.title for post in results[1].posts] == ["Fine post"]


def test_a_feed_whose_certificate_is_trusted_is_fetched_over_tls(tmp_path: Path) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    fetch = FetchConfig(timeout=5)
    with FeedServer(certificate=(certificate, key)) as secure:
        url = secure.add("/feed.xml", feed_body("Secure post"))
        with make_client(fetch, cafile=str(certificate)) as client:
            fetched = fetch_url(client, url, fetch)
    assert (fetched.http_status, fetched.error) == (200, "")
    assert b"Secure post" in (fetched.data or b"")


def test_a_private_ca_given_as_cafile_is_the_one_trusted(tmp_path: Path) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    context = feed_tls_context(str(certificate))
    assert context.cert_store_stats()["x509_ca"] == 1
    with FeedServer(certificate=(certificate, key)) as secure:
        url = secure.add("/feed.xml", feed_body("Secure post"))
        with httpx.Client(verify=context) as client:
            assert client.get(url).status_code == 200
        with httpx.Client(verify=feed_tls_context()) as client, pytest.raises(httpx.ConnectError):
            client.get(url)
