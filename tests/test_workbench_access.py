"""Who the workbench answers: only the Host names it expects (no DNS rebinding), and a password
that cannot be guessed at speed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import httpx
import pytest

from digest.config.schema import load_config
from digest.core.errors import ConfigError
from digest.web.workbench import (
    MAX_WRONG_PASSWORDS,
    PasswordAttempts,
    Workbench,
    allowed_names,
    client_of,
    create_workbench_app,
    expected_host,
)
from tests.conftest import NOW, Project
from tests.support.serving import serving

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "correct horse battery staple"
NAMES = frozenset({"editor.example.org", "10.0.0.7"})


@pytest.mark.parametrize(
    ("header", "local"),
    [
        ("127.0.0.1:8026", "127.0.0.1"),
        ("localhost:8026", "127.0.0.1"),
        ("LocalHost", "127.0.0.1"),
        ("localhost.:8026", "127.0.0.1"),
        ("[::1]:8026", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1:9000", "127.0.0.1"),  # an SSH tunnel on another local port
        ("editor.example.org", "127.0.0.1"),
        ("Editor.Example.org:443", "127.0.0.1"),
        ("10.0.0.7:8026", "0.0.0.0"),
        ("192.168.1.5:8026", "192.168.1.5"),  # the address the client connected to
        ("192.168.1.5:8026", "::ffff:192.168.1.5"),
    ],
)
def test_the_workbench_expects_loopback_its_own_address_and_configured_names(
    header: str, local: str
) -> None:
    assert expected_host(header, NAMES, local)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "attacker.example",
        "attacker.example:8026",
        "localhost.attacker.example:8026",
        "127.0.0.1.nip.io:8026",
        "editor.example.org.attacker.example",
        "192.168.1.6:8026",
        "[::1",
        "::1",
        "[localhost]:8026",
        "127.0.0.1:80:80",
        "127.0.0.1:http",
        "127.0.0.1:123456",
        "[::1]x",
    ],
)
def test_any_other_host_is_refused(header: str | None) -> None:
    assert not expected_host(header, NAMES, "192.168.1.5")


def test_the_name_it_listens_on_is_expected_but_not_a_wildcard_address() -> None:
    assert allowed_names(["Editor.example.org."], "preview.example.net") == frozenset(
        {"editor.example.org", "preview.example.net"}
    )
    assert allowed_names([], "0.0.0.0") == frozenset()
    assert allowed_names([], "[::]") == frozenset()


def test_workbench_hosts_are_checked_and_normalised(project: Project) -> None:
    project.write_config("workbench:\n  hosts: [Editor.Example.org., '[fd00::7]']\n")
    assert load_config(project.config).workbench.hosts == ["editor.example.org", "fd00::7"]
    project.write_config("workbench:\n  hosts: ['https://editor.example.org:8443/']\n")
    with pytest.raises(ConfigError) as refused:
        load_config(project.config)
    assert "workbench.hosts" in str(refused.value)
    assert "without scheme, port or path" in str(refused.value)


def test_wrong_passwords_lock_one_client_out_for_the_window_only() -> None:
    clock = [1000.0]
    attempts = PasswordAttempts(3, 60.0, monotonic=lambda: clock[0], max_clients=2)
    for _ in range(3):
        assert attempts.retry_after("203.0.113.9") is None
        attempts.wrong("203.0.113.9")
        clock[0] += 1
    assert attempts.retry_after("203.0.113.9") == pytest.approx(57.0)
    assert attempts.retry_after("198.51.100.1") is None  # another client is not affected
    clock[0] += 57
    assert attempts.retry_after("203.0.113.9") is None  # the oldest guess left the window
    attempts.wrong("203.0.113.9")
    assert attempts.retry_after("203.0.113.9") == pytest.approx(1.0)
    attempts.right("203.0.113.9")
    assert attempts.retry_after("203.0.113.9") is None
    for client in ("a", "b", "c", "d"):
        attempts.wrong(client)
    assert len(attempts._wrong) == 2  # bounded: the oldest clients are forgotten


def test_an_ipv6_client_is_counted_by_its_64_block() -> None:
    one = client_of({"client": ("2001:db8:1:2:aaaa::1", 5000)})
    other = client_of({"client": ("2001:db8:1:2:bbbb::2", 5000)})
    assert one == other == "2001:db8:1:2::/64"
    assert client_of({"client": ("::ffff:203.0.113.9", 5000)}) == "203.0.113.9"
    assert client_of({"client": None}) == ""


@pytest.fixture
def guarded(project: Project) -> Iterator[tuple[TestClient, list[float]]]:
    clock = [1000.0]
    attempts = PasswordAttempts(3, 300.0, monotonic=lambda: clock[0])
    app = create_workbench_app(Workbench(project.config, lambda: NOW), PASSWORD, attempts=attempts)
    with TestClient(app, base_url="http://127.0.0.1:8026") as client:
        yield client, clock


def test_after_too_many_wrong_passwords_even_the_right_one_waits(
    guarded: tuple[TestClient, list[float]],
) -> None:
    client, clock = guarded
    assert client.get("/preview/version").status_code == 401  # no password: not a guess
    for guess in ("guess", "Guess", "GUESS"):
        assert client.get("/preview/version", auth=("editor", guess)).status_code == 401
    refused = client.get("/preview/version", auth=("editor", PASSWORD))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "300"
    assert "www-authenticate" not in refused.headers
    assert "try again in 300 seconds" in refused.text
    clock[0] += 300
    assert client.get("/preview/version", auth=("editor", PASSWORD)).status_code == 200


def test_the_right_password_clears_the_count(guarded: tuple[TestClient, list[float]]) -> None:
    client, _ = guarded
    for _ in range(5):
        for guess in ("one", "two"):
            assert client.get("/preview/version", auth=("", guess)).status_code == 401
        assert client.get("/preview/version", auth=("", PASSWORD)).status_code == 200


def test_digest_serve_refuses_unexpected_hosts_on_the_workbench_only(project: Project) -> None:
    project.write_config("workbench:\n  hosts: [editor.example.org]\n")
    with serving(project) as served:
        port = served.workbench.rsplit(":", 1)[1]
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io"):
            refused = httpx.get(f"{served.workbench}/preview", headers={"Host": host}, timeout=10)
            assert refused.status_code == 421
            assert refused.content == b""
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "editor.example.org"):
            answered = httpx.get(
                f"{served.workbench}/preview/version", headers={"Host": host}, timeout=10
            )
            assert answered.status_code == 200, host
        # The public app is reached by whatever name the newsletter's links use.
        health = httpx.get(f"{served.public}/healthz", headers={"Host": "news.example.org"})
        assert health.status_code == 200
    assert "refused a request for host 'attacker.example'" in served.stderr


def test_digest_serve_stops_a_password_guesser(project: Project) -> None:
    env = {"DIGEST_WORKBENCH_PASSWORD": PASSWORD}
    with serving(project, env=env) as served:
        url = f"{served.workbench}/preview/version"
        for number in range(MAX_WRONG_PASSWORDS):
            assert httpx.get(url, auth=("editor", f"guess {number}")).status_code == 401
        refused = httpx.get(url, auth=("editor", PASSWORD))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 15 * 60
        assert httpx.get(f"{served.public}/healthz").status_code == 200
