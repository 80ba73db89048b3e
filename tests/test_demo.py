"""`make demo`'s command: the real pipeline on the bundled samples, into a local mail server."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from pathlib import Path


def run_demo(folder: Path) -> subprocess.CompletedProcess[str]:
    """`digest demo --dir folder` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "digest", "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_sends_the_sample_issue_and_says_where_everything_is(tmp_path: Path) -> None:
    folder = tmp_path / "demo-output"
    result = run_demo(folder)
    assert result.returncode == 0, result.stderr
    received = sorted((folder / "received").glob("*.eml"))
    assert len(received) == 3
    assert f"Preview (as subscribers see it): {folder / 'preview.html'}" in result.stdout
    for path in received:
        assert f"  {path}" in result.stdout
    assert "delivered 3, failed 0, pending 0" in result.stdout

    message = email.message_from_bytes(received[0].read_bytes(), policy=email.policy.default)
    assert message["Subject"].startswith("Collaborate Weekly: ")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    assert "From the blog" in html and "Latest news" in html
    assert "From the blog" in text and "Latest news" in text
    preview = (folder / "preview.html").read_text(encoding="utf-8")
    assert "From the blog" in preview

    again = run_demo(folder)  # a second run starts afresh: same three messages, not six
    assert again.returncode == 0, again.stderr
    assert len(list((folder / "received").glob("*.eml"))) == 3
