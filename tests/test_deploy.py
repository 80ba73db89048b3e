"""What deploy/ ships: systemd units that systemd accepts and rates at most 2.5 in `systemd-analyze
security`, whose system-call filter, address families and MemoryDenyWriteExecute leave a real send
and the public app working, and a container image that runs unprivileged with a health check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Project
from tests.support.confine import expand, libseccomp
from tests.support.serving import serving

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = ("digest.service", "digest-serve.service")
MOST_EXPOSED = 2.5
INSTALLED_AT = "/opt/digest/bin/digest"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd)",
)


def mdwe_missing() -> str | None:
    """Why MemoryDenyWriteExecute cannot be tried here, if it cannot."""
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed (it lists the system-call groups)"
    if libseccomp() is None:
        return "libseccomp is not installed (Debian: apt-get install libseccomp2)"
    probe = subprocess.run(
        [sys.executable, "-c", "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(65,1,0,0,0))"],
        check=False,
    )
    if probe.returncode != 0:
        return "the kernel has no PR_SET_MDWE (Linux 6.3 or later), MemoryDenyWriteExecute's kin"
    return None


def settings(unit: str, key: str) -> list[str]:
    """Every value the unit file gives `key`, in order."""
    text = (DEPLOY / unit).read_text(encoding="utf-8")
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_accepts_the_unit_without_a_word(unit: str, tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this installation's digest.
    installed = Path(sys.executable).parent / "digest"
    text = (DEPLOY / unit).read_text(encoding="utf-8")
    assert INSTALLED_AT in text
    (tmp_path / unit).write_text(text.replace(INSTALLED_AT, str(installed)), encoding="utf-8")

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    # Unknown keys and unparsable values are only warned about: any output is a mistake.
    assert unit not in result.stderr + result.stdout, result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_is_rated_at_most_2_5_exposed(unit: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(DEPLOY / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= MOST_EXPOSED, result.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_the_unit_keeps_to_what_digest_needs(unit: str) -> None:
    assert settings(unit, "CapabilityBoundingSet") == [""]
    assert settings(unit, "RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"]
    assert settings(unit, "UMask") == ["0077"]
    assert settings(unit, "MemoryDenyWriteExecute") == ["yes"]
    assert settings(unit, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert settings(unit, "ReadWritePaths") == ["/var/lib/digest"]
    assert settings(unit, "StateDirectory") == ["digest"]


def allowed_calls(tmp_path: Path, unit: str) -> Path:
    """A file of the system calls the unit's SystemCallFilter= lines allow, one a line."""
    allowed: set[str] = set()
    for value in settings(unit, "SystemCallFilter"):
        if value.startswith("~"):
            allowed -= expand(value[1:])
        else:
            allowed |= expand(value)
    path = tmp_path / f"{unit}.calls"
    path.write_text("\n".join(sorted(allowed)), encoding="utf-8")
    return path


def confined(tmp_path: Path, unit: str) -> tuple[str, ...]:
    """The command that runs what follows it within the unit's limits."""
    support = Path(__file__).resolve().parent / "support" / "confine.py"
    return (sys.executable, str(support), str(allowed_calls(tmp_path, unit)))


@pytest.mark.skipif(mdwe_missing() is not None, reason=str(mdwe_missing()))
def test_a_real_send_works_within_the_scheduler_units_limits(
    project: Project, tmp_path: Path
) -> None:
    command = [*confined(tmp_path, "digest.service"), sys.executable, "-m", "digest"]
    result = subprocess.run(
        [*command, "--config", str(project.config), "-v", "send"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"DIGEST_NOW": project.now.isoformat(), "PATH": "/usr/bin:/bin"},
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert sorted(r for m in project.smtp.received for r in m.recipients) == [
        "ann@example.com",
        "bob@example.com",
    ]


@pytest.mark.skipif(mdwe_missing() is not None, reason=str(mdwe_missing()))
def test_the_public_app_answers_within_its_units_limits(project: Project, tmp_path: Path) -> None:
    wrapper = confined(tmp_path, "digest-serve.service")
    with serving(project, "--no-preview", wrapper=wrapper) as served:
        assert httpx.get(f"{served.public}/healthz", timeout=10).text == "ok\n"
        assert httpx.get(f"{served.public}/unsubscribe", timeout=10).status_code == 400


def test_the_limits_refuse_what_the_units_refuse_and_allow_what_digest_needs(
    tmp_path: Path,
) -> None:
    if (reason := mdwe_missing()) is not None:
        pytest.skip(reason)
    probe = (
        "import mmap, os, socket, subprocess, sys\n"
        "for name, attempt in (\n"
        "    ('packet socket', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),\n"
        "    ('priority', lambda: os.setpriority(os.PRIO_PROCESS, 0, 5)),\n"
        "    ('w+x memory', lambda: mmap.mmap(-1, 4096, prot=7)),\n"
        # What the feed parser's second process needs: a socket pair and a child Python.
        "    ('socket pair', lambda: socket.socketpair()),\n"
        "    ('child', lambda: subprocess.run([sys.executable, '-c', ''], check=True)),\n"
        "):\n"
        "    try:\n"
        "        attempt()\n"
        "        print(name, 'allowed')\n"
        "    except OSError:\n"
        "        print(name, 'refused')\n"
    )
    result = subprocess.run(
        [*confined(tmp_path, "digest.service"), sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.splitlines() == [
        "packet socket refused",
        "priority refused",
        "w+x memory refused",
        "socket pair allowed",
        "child allowed",
    ], result.stderr


def test_the_image_runs_unprivileged_read_only_with_a_health_check() -> None:
    lines = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    health = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "/healthz" in "\n".join(lines[lines.index(health[0]) :][:3])
    # Nothing is written beside the code at run time: bytecode is compiled into the image.
    assert any("compileall" in line for line in lines)
    assert "PYTHONDONTWRITEBYTECODE=1" in "\n".join(lines)
