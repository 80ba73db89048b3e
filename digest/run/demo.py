"""The whole job on the bundled sample feeds, served and delivered on 127.0.0.1 only."""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from digest import store
from digest.config.schema import load_config
from digest.core.models import SendReport
from digest.run import preview
from digest.run import send as sending

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SUBSCRIBERS = """email,name
amara.okafor@example.com,Amara Okafor
ben.hughes@example.net,Ben Hughes
carys.evans@example.org,Carys Evans
"""


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left its output, and what the send did."""

    directory: Path
    config: Path
    preview: Path
    received: tuple[Path, ...]
    archive: Path
    report: SendReport
    subject: str


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _SaveToFolder:
    """aiosmtpd handler writing each accepted message to a numbered .eml file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved: list[Path] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for recipient in envelope.rcpt_tos:
                safe = re.sub(r"[^A-Za-z0-9@._-]", "_", recipient)
                path = self.folder / f"{len(self.saved) + 1:03d}-{safe}.eml"
                path.write_bytes(envelope.original_content or envelope.content)
                self.saved.append(path)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _feed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(SAMPLES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _mail_server(folder: Path) -> Iterator[tuple[int, _SaveToFolder]]:
    handler = _SaveToFolder(folder)
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield int(controller.port), handler
    finally:
        controller.stop()


def _config_text(feeds_base: str, smtp_port: int) -> str:
    return f"""\
# Written by `digest demo`: the sample feeds and the mail server run on 127.0.0.1 only.
newsletter:
  title: Collaborate Weekly
  from: "Collaborate CIC <digest@example.org>"
  reply_to: "Collaborate CIC <hello@example.org>"
  intro: "The latest **research, events and news** from Collaborate, every Monday."
  unsubscribe_url: "http://127.0.0.1:8025/unsubscribe?token={{token}}"
  archive_url: "http://127.0.0.1:8025"
  choosable_sections: true
  footer: "You are receiving this because you subscribed to Collaborate Weekly."
  address: "Collaborate CIC, 1 Example Street, London EC1A 1AA"
feeds:
  - name: From the blog
    url: {feeds_base}/blog.xml
  - name: Latest news
    url: {feeds_base}/news.atom
digest:
  max_posts_per_section: 10
  lookback_days: 3650
subscribers: subscribers.csv
smtp:
  host: 127.0.0.1
  port: {smtp_port}
  security: none
state: {store.DEFAULT_STATE}
archive:
  enabled: true
  out_dir: web
signup:
  enabled: true
schedule:
  day: monday
  time: "08:00"
  timezone: Europe/London
"""


def run_demo(directory: Path, now: datetime) -> DemoResult:
    """Collect, preview and send the sample issue; every file lands in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    received_dir = directory / "received"
    shutil.rmtree(received_dir, ignore_errors=True)
    received_dir.mkdir()
    store.remove_path(directory / store.DEFAULT_STATE)
    shutil.rmtree(directory / "web", ignore_errors=True)
    (directory / "subscribers.csv").write_text(SUBSCRIBERS, encoding="utf-8")
    with _feed_server() as feeds_base, _mail_server(received_dir) as (smtp_port, handler):
        config_path = directory / "config.yaml"
        config_path.write_text(_config_text(feeds_base, smtp_port), encoding="utf-8")
        config = load_config(config_path)
        prepared, html, _text = preview.preview(config, now)
        preview_path = directory / "preview.html"
        preview_path.write_text(html, encoding="utf-8")
        report = sending.send(config, now)
        received = tuple(handler.saved)
    return DemoResult(
        directory,
        config_path,
        preview_path,
        received,
        directory / "web" / "archive" / "index.html",
        report,
        prepared.rendered.subject,
    )
