"""The next issue in the editor's hands: `preview` it, list its candidate `posts`, `leave-out`
or `pin` one, write a `note` above its sections, and `mark-seen` for a clean start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from digest.cli.options import current_time, with_config
from digest.cli.output import err, open_in_browser, out, plural, print_problems
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.run import preview as previewing


@click.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in a browser.")
@click.option("--text", "show_text", is_flag=True, help="Print the plain-text part.")
@with_config
def preview(config: Config, out_path: Path | None, open_browser: bool, show_text: bool) -> None:
    """The next issue exactly as it will be sent; sends and records nothing."""
    prepared, html, text = previewing.preview(config, current_time())
    print_problems(prepared.problems)
    for warning in prepared.rendered.warnings:
        err.print(f"Warning: {warning}", markup=False)
    if show_text:
        click.echo(text)
    if out_path is None and (open_browser or not show_text):
        out_path = Path("preview.html")
    if prepared.sample:
        err.print(
            "Nothing new: `digest send` would send nothing now."
            " The preview shows sample posts so you can see the design.",
            markup=False,
        )
    if out_path is not None:
        out_path.write_text(html, encoding="utf-8")
        what = "Preview with sample posts" if prepared.sample else "Preview of the next issue"
        out.print(
            f"{what} ({prepared.issue.post_count} posts,"
            f" subject {prepared.rendered.subject!r}) written to {out_path}",
            markup=False,
        )
        if open_browser and not open_in_browser(out_path.resolve().as_uri()):
            err.print(f"No browser could be opened here; open {out_path} yourself.", markup=False)


@click.command()
@with_config
def posts(config: Config) -> None:
    """The next issue's candidate posts, with the short ids leave-out and pin take."""
    from digest.issue import choices as editor

    found = editor.next_posts(config, current_time())
    if not found:
        out.print("No new posts for the next issue.")
        return
    for candidate in found:
        post = candidate.post
        date = f"{post.published:%Y-%m-%d}" if post.published else ""
        out.print(
            f"{candidate.short_id}  {candidate.status:<8}  {date}  {post.title}  {post.link}",
            markup=False,
        )


# -- the editor's hand on the next issue ---------------------------------------------------


@click.command()
@click.argument("text", nargs=-1)
@click.option(
    "--file",
    "note_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the note (Markdown) from this file.",
)
@click.option("--show", is_flag=True, help="Print the note waiting for the next issue.")
@click.option("--clear", is_flag=True, help="Withdraw the note.")
@with_config
def note(
    config: Config, text: tuple[str, ...], note_file: Path | None, show: bool, clear: bool
) -> None:
    """A note (Markdown) above the sections of the next issue only: TEXT, --file, or $EDITOR."""
    from digest.issue import choices as editor

    if sum((bool(text), note_file is not None, show, clear)) > 1:
        raise click.UsageError("give the note as TEXT, --file, --show or --clear: only one")
    if show:
        current = editor.note(config)
        out.print(current if current else "No note for the next issue.", markup=False)
        return
    if clear:
        new = ""
    elif note_file is not None:
        new = editor.read_note_file(note_file)
    elif text:
        new = " ".join(text)
    else:
        edited = click.edit(editor.note(config), extension=".md")
        if edited is None:
            out.print("Note unchanged.")
            return
        new = edited
    kept = editor.set_note(config, new, current_time())
    if kept:
        out.print("The next issue will carry this note above its sections:", markup=False)
        out.print(kept, markup=False)
    else:
        out.print("No note for the next issue.")


STATUS_PHRASES = {
    "in": "in the next issue",
    "pinned": "pinned: in the next issue, first in its section",
    "left out": "left out of every issue until `digest leave-out --undo`",
    "not in": "not in the next issue (over a cap, or a duplicate)",
}


def _choose(config: Config, post_id: str, choice: Any, undo: bool) -> None:
    from digest.issue import choices as editor

    chosen = editor.choose(config, post_id, choice, current_time(), undo=undo)
    out.print(
        f"{chosen.short_id} {chosen.post.title}: {STATUS_PHRASES[chosen.status]}.", markup=False
    )


@click.command("leave-out")
@click.argument("post_id")
@click.option("--undo", is_flag=True, help="Put a left-out post back among the candidates.")
@with_config
def leave_out(config: Config, post_id: str, undo: bool) -> None:
    """Leave post POST_ID (from `digest posts`) out of every issue, until --undo."""
    from digest.core.models import Choice

    _choose(config, post_id, Choice.LEAVE_OUT, undo)


@click.command()
@click.argument("post_id")
@click.option("--undo", is_flag=True, help="Unpin the post.")
@with_config
def pin(config: Config, post_id: str, undo: bool) -> None:
    """Put post POST_ID in the next issue, first in its section, whatever the caps and filters."""
    from digest.core.models import Choice

    _choose(config, post_id, Choice.PIN, undo)


@click.command("mark-seen")
@with_config
def mark_seen(config: Config) -> None:
    """Record every post the feeds carry today as already sent: a clean start on an old blog."""
    from digest.issue import choices as editor

    report = editor.mark_seen(config, current_time())
    print_problems(report.problems)
    out.print(
        f"Marked {plural(report.marked, 'post')} as already sent ({report.carried} in"
        f" {plural(report.feeds, 'feed')}); the next issue brings only posts that appear after"
        " now.",
        markup=False,
    )
    if report.failed:
        raise DigestError(
            f"{plural(len(report.failed), 'feed')} could not be read, so their posts are not"
            f" marked ({'; '.join(report.failed)}); run `digest mark-seen` again"
        )
