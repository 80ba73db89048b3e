"""The readers: `subscribers` (counts, `export`, `add`, `forget`), `unsubscribe`, `resubscribe`,
and the sign-up form `snippet`."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.options import current_time, email_address, with_config
from digest.cli.output import err, out, plural
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.readers import by_request


@click.command()
@click.argument("address")
@with_config
def unsubscribe(config: Config, address: str) -> None:
    """Stop all mail to ADDRESS, whatever the subscriber list says."""
    email = email_address(address)
    if by_request.unsubscribe(config, email, current_time()):
        out.print(f"{email} is unsubscribed: no issue will be sent to it again.", markup=False)
    else:
        out.print(f"{email} was already unsubscribed; nothing changed.", markup=False)


@click.command()
@click.argument("address")
@with_config
def resubscribe(config: Config, address: str) -> None:
    """Undo an unsubscribe for ADDRESS (only on the person's own request)."""
    email = email_address(address)
    done = by_request.resubscribe(config, email)
    if not done.removed:
        out.print(f"{email} was not unsubscribed; nothing changed.", markup=False)
        return
    out.print(f"{email} is resubscribed.", markup=False)
    if not done.listed:
        err.print(
            f"Warning: {email} is not in {config.subscribers}; add it there to send to it.",
            markup=False,
        )


@click.group(invoke_without_command=True)
@click.pass_context
def subscribers(ctx: click.Context) -> None:
    """Count the subscribers; export, add or forget one (see the subcommands)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_subscriber_counts)


@with_config
def _subscriber_counts(config: Config) -> None:
    """Count the subscribers: listed, signed up, unsubscribed, invalid and duplicate rows."""
    from rich.table import Table
    from rich.text import Text

    from digest.readers.overview import overview

    found = overview(config)
    counted = found.counts
    table = Table("", "Count", "Which")
    rows = [
        ("Listed", found.listed, [config.subscribers]),
        (
            "Unsubscribed",
            len(found.unsubscribed),
            [f"{row.email} ({row.source}, {row.at:%Y-%m-%d})" for row in found.unsubscribed],
        ),
        *(
            (
                f"Suppressed: {kind}",
                len(which),
                [f"{row.email} ({row.at:%Y-%m-%d}: {row.reason or row.source})" for row in which],
            )
            for kind, which in found.bounced.items()
        ),
        ("Signed up and confirmed", counted.confirmed, []),
        ("Signed up, awaiting confirmation", counted.pending, []),
        ("Forgotten on request", counted.forgotten, []),
        ("Will receive the next issue", counted.receiving, []),
        ("Invalid rows (skipped)", len(found.invalid), list(found.invalid)),
        ("Duplicate rows (ignored)", len(found.duplicates), list(found.duplicates)),
    ]
    for label, count, which in rows:
        table.add_row(label, str(count), Text("\n".join(which) or "-"))
    out.print(table)
    if found.unsubscribed_elsewhere:
        out.print(
            f"{found.unsubscribed_elsewhere} more unsubscribed addresses are not on the list."
        )
    if config.newsletter.choosable_sections:
        sections = Table("Section", "Receiving it")
        for title, count in counted.by_section.items():
            sections.add_row(title, str(count))
        out.print(sections)


@click.command()
@click.option(
    "--page",
    default="",
    metavar="URL",
    help="The address of the page the form goes on, kept on each sign-up's consent record.",
)
@with_config
def snippet(config: Config, page: str) -> None:
    """Print an HTML sign-up form to paste into the organisation's own site."""
    from digest.readers import signup

    if not config.signup.enabled:
        raise DigestError("sign-up is off: set signup.enabled: true in config.yaml first")
    recorded = signup.recorded_page(page)
    if page and not recorded:
        raise DigestError(
            f"--page must be the http(s) address of the page the form goes on, of at most"
            f" {signup.MAX_PAGE} characters, e.g. https://example.org/newsletter"
        )
    click.echo(signup.snippet(config, recorded), nl=False)


@subscribers.command("export")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path))
@with_config
def subscribers_export(config: Config, output_format: str, out_path: Path | None) -> None:
    """Everything held about each person: details, sections, consent and delivery counts."""
    from digest.readers import audience, overview

    people = overview.export(config)
    text = audience.export_text(people, output_format)
    if out_path is None:
        click.echo(text, nl=False)
    else:
        out_path.write_text(text, encoding="utf-8")
        out.print(f"{plural(len(people), 'person')} written to {out_path}", markup=False)


@subscribers.command("forget")
@click.argument("address")
@with_config
def subscribers_forget(config: Config, address: str) -> None:
    """Erase ADDRESS everywhere (a right-to-erasure request); it stays off the list for good."""
    email = email_address(address)
    erased = by_request.erase(config, email, current_time())
    again = f"run `digest subscribers forget {email}` again to finish"
    if erased.unerased:
        raise DigestError(
            f"{email} is erased from the tables digest knows, but {', '.join(erased.unerased)}"
            f" still hold it: the erasure is not complete; clear those by hand, then {again}"
        )
    if not erased.checkpointed:
        raise DigestError(
            f"{email} is erased from every table, but another process is still reading an"
            f" older snapshot of {config.state_path}, so the erased bytes are still in the file"
            f" (or its write-ahead log); when it has finished (a `digest serve` request, an"
            f" export), {again}"
        )
    if erased.bytes_left:
        raise DigestError(
            f"{email} is erased from every table, but its bytes are still in"
            f" {config.state_path} after rebuilding it: the erasure is not complete"
        )
    held = "Erased everything held about" if erased.found else "Nothing is held about"
    out.print(
        f"{held} {email}; none of it is left in {config.state_path}, and a keyed hash keeps it"
        f" off the list. Remove it from {config.subscribers} too, if it is there.",
        markup=False,
    )
    if erased.in_content:
        err.print(
            f"Warning: {email} still appears in published content ({', '.join(erased.in_content)}:"
            " what the feeds or the editor wrote), which forget does not change.",
            markup=False,
        )


@subscribers.command("add")
@click.argument("address")
@click.option("--name", default="", help="The person's name.")
@click.option(
    "--source", required=True, help='How they consented, e.g. "paper form, open day 2026".'
)
@click.option("--section", "sections", multiple=True, help="A section they chose (repeatable).")
@with_config
def subscribers_add(
    config: Config, address: str, name: str, source: str, sections: tuple[str, ...]
) -> None:
    """Add someone who asked in person, with how they consented on record."""
    from digest.readers import audience

    email = email_address(address)
    known = audience.section_titles(config)
    unknown = [section for section in sections if section not in known]
    if unknown:
        raise click.BadParameter(
            f"no section {unknown[0]!r}; the sections are: {', '.join(known)}",
            param_hint="--section",
        )
    if by_request.add_in_person(config, email, name, sections, source, current_time()):
        out.print(f"{email} is subscribed (source: {source}).", markup=False)
    else:
        out.print(f"{email} was already subscribed; nothing changed.", markup=False)
