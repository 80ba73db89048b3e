"""The readers: `subscribers` (counts, `export`, `add`, `forget`), `unsubscribe`, `resubscribe`,
and the sign-up form `snippet`."""

from __future__ import annotations

from pathlib import Path

import click

from digest import store
from digest.cli.options import current_time, email_address, with_config
from digest.cli.output import (
    err,
    out,
    plural,
)
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.run import editions


@click.command()
@click.argument("address")
@with_config
def unsubscribe(config: Config, address: str) -> None:
    """Stop all mail to ADDRESS, whatever the subscriber list says."""
    email = email_address(address)
    with store.open(config) as state:
        added = state.suppressions.suppress(
            email, current_time(), "manual", kind=store.SuppressionKind.MANUAL
        )
    if added:
        out.print(f"{email} is unsubscribed: no issue will be sent to it again.", markup=False)
    else:
        out.print(f"{email} was already unsubscribed; nothing changed.", markup=False)


@click.command()
@click.argument("address")
@with_config
def resubscribe(config: Config, address: str) -> None:
    """Undo an unsubscribe for ADDRESS (only on the person's own request)."""
    from digest.readers.subscribers import load_subscribers

    email = email_address(address)
    with store.open(config) as state:
        removed = state.suppressions.unsuppress(email)
    if not removed:
        out.print(f"{email} was not unsubscribed; nothing changed.", markup=False)
        return
    listed = {s.email for s in load_subscribers(config.subscribers_path).subscribers}
    out.print(f"{email} is resubscribed.", markup=False)
    if email not in listed:
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


# How `digest subscribers` names each kind of bounce or complaint suppression.
_BOUNCE_GROUPS = {
    store.SuppressionKind.COMPLAINT: "complaint",
    store.SuppressionKind.SOFT_BOUNCES: "soft bounces",
    store.SuppressionKind.REFUSED: "refused during the send",
    store.SuppressionKind.HARD_BOUNCE: "hard bounce",
}


def _by_reason(rows: list[store.Suppression]) -> dict[str, list[str]]:
    """Bounce and complaint suppressions grouped by their kind, each with its reason."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        reason = row.reason or row.source
        groups.setdefault(_BOUNCE_GROUPS[row.kind], []).append(
            f"{row.email} ({row.at:%Y-%m-%d}: {reason})"
        )
    return groups


@with_config
def _subscriber_counts(config: Config) -> None:
    """Count the subscribers: listed, signed up, unsubscribed, invalid and duplicate rows."""
    from rich.table import Table
    from rich.text import Text

    from digest.readers import audience
    from digest.readers.subscribers import load_subscribers

    subscriber_list = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        suppressions = state.suppressions.all()
        secret = audience.forgetting_secret(state, config.secret)
        counted = audience.counts(state, subscriber_list, secret, audience.section_titles(config))
    bounce_rows = [row for row in suppressions if row.kind.is_bounce]
    listed = {s.email for s in subscriber_list.subscribers}
    suppressed = [row for row in suppressions if row.email in listed]
    elsewhere = len(suppressions) - len(suppressed)
    table = Table("", "Count", "Which")
    rows = [
        ("Listed", len(listed), [config.subscribers]),
        (
            "Unsubscribed",
            len(suppressed),
            [f"{row.email} ({row.source}, {row.at:%Y-%m-%d})" for row in suppressed],
        ),
        *(
            (f"Suppressed: {reason}", len(which), which)
            for reason, which in _by_reason(bounce_rows).items()
        ),
        ("Signed up and confirmed", counted.confirmed, []),
        ("Signed up, awaiting confirmation", counted.pending, []),
        ("Forgotten on request", counted.forgotten, []),
        ("Will receive the next issue", counted.receiving, []),
        ("Invalid rows (skipped)", len(subscriber_list.invalid), list(subscriber_list.invalid)),
        (
            "Duplicate rows (ignored)",
            len(subscriber_list.duplicates),
            list(subscriber_list.duplicates),
        ),
    ]
    for label, count, which in rows:
        table.add_row(label, str(count), Text("\n".join(which) or "-"))
    out.print(table)
    if elsewhere:
        out.print(f"{elsewhere} more unsubscribed addresses are not on the list.")
    if config.newsletter.choosable_sections:
        sections = Table("Section", "Receiving it")
        for title, count in counted.by_section.items():
            sections.add_row(title, str(count))
        out.print(sections)


@click.command()
@with_config
def snippet(config: Config) -> None:
    """Print an HTML sign-up form to paste into the organisation's own site."""
    from digest.readers import signup

    if not config.signup.enabled:
        raise DigestError("sign-up is off: set signup.enabled: true in config.yaml first")
    click.echo(signup.snippet(config), nl=False)


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
    from digest.readers import audience
    from digest.readers.subscribers import load_subscribers

    subscriber_list = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        people = audience.export(state, subscriber_list)
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
    from digest.readers import audience

    email = email_address(address)
    secret = editions.signing_secret(config)
    # No send may record a delivery to the address while it is being erased.
    with (
        store.lock(config, "send", command="subscribers forget"),
        store.open(config) as state,
    ):
        erased = audience.forget(state, email, secret, current_time())
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
    with store.open(config) as state:
        if email in state.suppressions.suppressed():
            raise DigestError(
                f"{email} unsubscribed; only they can undo that (digest resubscribe on request)"
            )
        added = state.signups.add(email, name, sections or None, source, current_time())
    if added:
        out.print(f"{email} is subscribed (source: {source}).", markup=False)
    else:
        out.print(f"{email} was already subscribed; nothing changed.", markup=False)
