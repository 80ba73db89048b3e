"""`digest serve` as a real process on free 127.0.0.1 ports, for the tests that talk to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.conftest import Project
from tests.support.smtpserver import free_port


@dataclass
class Serving:
    """A running `digest serve`: its two base URLs; its output once it has stopped."""

    public: str
    workbench: str
    process: subprocess.Popen[bytes]
    stdout: str = ""
    stderr: str = ""


@contextmanager
def serving(
    project: Project,
    *extra: str,
    env: dict[str, str] | None = None,
    workbench_host: str = "127.0.0.1",
    wrapper: tuple[str, ...] = (),
    port: int | None = None,
) -> Iterator[Serving]:
    """Run `digest serve` (after `wrapper`, a command that runs the rest, if given), the public
    app on `port` (a free one if None); yields once /healthz answers, stops it (SIGTERM) on the
    way out."""
    port, workbench_port = port or free_port(), free_port()
    environment = {**os.environ, "DIGEST_NOW": project.now.isoformat(), **(env or {})}
    environment.pop("DIGEST_SECRET", None)
    if env is None or "DIGEST_WORKBENCH_PASSWORD" not in env:
        environment.pop("DIGEST_WORKBENCH_PASSWORD", None)
    command = [*wrapper, sys.executable, "-m", "digest", "--config", str(project.config), "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--workbench-host", workbench_host, "--workbench-port", str(workbench_port)]
    process = subprocess.Popen(
        [*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
    )
    served = Serving(
        f"http://127.0.0.1:{port}", f"http://127.0.0.1:{workbench_port}", process=process
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                _, errors = process.communicate()
                raise AssertionError(f"digest serve exited: {errors.decode()}")
            try:
                if httpx.get(f"{served.public}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("digest serve did not answer /healthz within 30 s")
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            output, errors = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, errors = process.communicate()
        served.stdout, served.stderr = output.decode(), errors.decode()


@contextmanager
def digest_serve(project: Project, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `digest serve`; yields the public app's base URL once /healthz answers."""
    with serving(project, *extra, env=env) as served:
        yield served.public
