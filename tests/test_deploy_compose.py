"""deploy/compose.yaml, the container set the guide "Two hosts and more" describes: valid YAML
with the services and volumes the guide names, every digest container running a command (and
options) that `digest --help` lists, locked down as the image is, with its secrets in
environment files, and a Caddyfile that sends readers to each replica of the public app."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "docs" / "guides" / "two-hosts.md"
SERVICES = ("postgres", "run", "serve-1", "serve-2", "proxy")
DIGEST_SERVICES = ("run", "serve-1", "serve-2")
REPLICAS = ("serve-1", "serve-2")
VOLUMES = ("config", "state")
ENTRYPOINT = ["digest", "--config", "/data/config.yaml"]  # deploy/Dockerfile's


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def service(name: str) -> dict[str, Any]:
    found = compose()["services"][name]
    assert isinstance(found, dict)
    return found


@cache
def help_text(*command: str) -> str:
    """What `digest [COMMAND] --help` prints, from the installed command line."""
    result = subprocess.run(
        [sys.executable, "-m", "digest", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def commands() -> set[str]:
    """The command names `digest --help` lists under "Commands:"."""
    listing = help_text().split("Commands:", 1)[1]
    return set(re.findall(r"^  ([a-z][a-z-]*)\s", listing, re.M))


def options(*command: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text(*command)))


def check_digest_command(argv: list[str]) -> None:
    """`argv` (after the image's entry point) names a real command with options it takes."""
    name = argv[0]
    assert name in commands(), f"{name!r} is not a digest command"
    unknown = {arg for arg in argv[1:] if arg.startswith("--")} - options(name)
    assert not unknown, f"digest {name} has no {sorted(unknown)}"


def test_the_compose_file_has_the_services_and_volumes_the_guide_names() -> None:
    loaded = compose()
    guide = GUIDE.read_text(encoding="utf-8")

    assert set(loaded["services"]) == set(SERVICES)
    assert set(VOLUMES) <= set(loaded["volumes"])
    for name in (*SERVICES, *VOLUMES):
        assert f"`{name}`" in guide, f"the guide does not name {name}"
    assert "compose.yaml" in guide


def test_commands_the_help_lists_are_what_the_test_reads() -> None:
    # The parsing above must find the commands the containers run, and no made-up one.
    assert {"run", "serve", "check", "send", "history"} <= commands()
    assert "compose" not in commands()
    assert {"--host", "--port", "--no-preview"} <= options("serve")


@pytest.mark.parametrize("name", DIGEST_SERVICES)
def test_each_container_runs_a_real_digest_command(name: str) -> None:
    command = service(name)["command"]

    check_digest_command(command)


def test_there_is_one_scheduler_and_replicas_of_the_public_app() -> None:
    runs = [n for n in DIGEST_SERVICES if service(n)["command"][0] == "run"]
    serves = [n for n in DIGEST_SERVICES if service(n)["command"][0] == "serve"]

    assert runs == ["run"]
    assert serves == list(REPLICAS)
    for name in serves:
        command = service(name)["command"]
        # Reachable from the proxy, and no workbench on a public server.
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert "--no-preview" in command


def test_the_health_checks_ask_real_commands_and_endpoints() -> None:
    run_check = service("run")["healthcheck"]["test"]
    assert run_check[0] == "CMD"
    assert run_check[1:4] == ENTRYPOINT
    check_digest_command(run_check[4:])
    assert run_check[4:] == ["check", "--health"]

    for name in REPLICAS:
        probe = " ".join(service(name)["healthcheck"]["test"])
        assert "http://127.0.0.1:8025/healthz" in probe

    assert "pg_isready" in service("postgres")["healthcheck"]["test"]
    for name in DIGEST_SERVICES:
        assert service(name)["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_digest_containers_are_locked_down_with_secrets_in_env_files() -> None:
    for name in DIGEST_SERVICES:
        spec = service(name)
        assert spec["read_only"] is True
        assert spec["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in spec["security_opt"]
        assert spec["env_file"] == "digest.env"
        assert "config:/data:ro" in spec["volumes"]
    assert service("postgres")["env_file"] == "postgres.env"
    assert "state:/var/lib/postgresql/data" in service("postgres")["volumes"]
    # No password in the compose file itself: only the environment files hold them.
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert not re.search(r"(?i)^\s*[\w-]*(password|secret)[\w-]*\s*:", text, re.M)
    assert (DEPLOY / "postgres.env.example").is_file()
    assert (DEPLOY / "digest.env.example").is_file()


def test_the_proxy_sends_readers_to_every_ready_replica_and_is_trusted_for_their_ip() -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", caddyfile)
    assert upstreams is not None
    assert upstreams.group(1).split() == [f"{name}:8025" for name in REPLICAS]
    assert "health_uri /readyz" in caddyfile

    address = service("proxy")["networks"]["front"]["ipv4_address"]
    for name in REPLICAS:
        assert service(name)["environment"]["FORWARDED_ALLOW_IPS"] == address
