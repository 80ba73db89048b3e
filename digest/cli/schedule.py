"""Sending on a schedule: the next slots (`schedule`), the runner (`run`), and the editor's
approval of a waiting issue (`approve`, `hold`)."""

from __future__ import annotations

import logging
from datetime import datetime

import click

from digest.cli.options import current_time, metrics_address, metrics_listen_option, with_config
from digest.cli.output import out, summarise
from digest.config.schema import Config
from digest.core.errors import DigestError


@click.command("schedule")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--after",
    "after_text",
    metavar="DATE",
    help="ISO date or date-time to count from (default: now); without an offset it is read"
    " in the schedule's time zone.",
)
@with_config
def show_schedule(config: Config, count: int, after_text: str | None) -> None:
    """Print the next send slots, one ISO 8601 time with its UTC offset per line."""
    from digest.run import slots

    plan = slots.require_schedule(config)
    after = current_time()
    if after_text:
        try:
            after = slots.parse_when(after_text, plan)
        except ValueError:
            message = f"{after_text!r} is not an ISO date or date-time such as 2027-03-29T08:00"
            raise click.BadParameter(message, param_hint="--after") from None
    for slot in slots.next_slots(plan, after, count):
        click.echo(slot.isoformat())


@click.command()
@click.option("--once", is_flag=True, help="Send the due slot, or else the next one, now; exit.")
@metrics_listen_option
@with_config
def run(config: Config, once: bool, metrics_listen: str | None) -> None:
    """Send at every slot until stopped; SIGTERM or Ctrl-C finishes the message in flight."""
    from digest.metrics import endpoint
    from digest.run import approval, schedule

    for module in (schedule, approval, endpoint):
        logging.getLogger(module.__name__).setLevel(logging.INFO)
    clock = schedule.Clock.starting_at(current_time())
    if not once:
        address = metrics_address(config.metrics, metrics_listen)
        with endpoint.serving(config, address, clock.now):
            schedule.run_forever(config, clock)
        return
    result = schedule.run_once(config, clock)
    if result is None:
        out.print("Nothing to send: no unfinished issue and no future slot.")
        return
    slot = result.slot.isoformat() if result.slot else "-"
    if result.report is None:
        out.print(f"Slot {slot} was already handled; nothing sent.")
        return
    out.print(f"Slot {slot}:")
    summarise(result.report, "Sent")
    if result.report.pending:
        raise DigestError(
            f"{result.report.pending} messages left pending after temporary failures;"
            " run `digest send` again to retry them"
        )


def _decide(config: Config, decision: str) -> None:
    from digest.run import approval

    key = approval.decide(config, decision, current_time(), by="command line")
    when = datetime.fromisoformat(key)
    if decision == "approved":
        out.print(f"The issue due {when:%Y-%m-%d %H:%M} UTC is approved: `digest run` sends it.")
    else:
        out.print(f"The issue due {when:%Y-%m-%d %H:%M} UTC is held: it will not be sent.")


@click.command()
@with_config
def approve(config: Config) -> None:
    """Approve the issue waiting for approval (schedule.approval); within grace after its slot
    too."""
    _decide(config, "approved")


@click.command()
@with_config
def hold(config: Config) -> None:
    """Hold the issue waiting for approval: not sent; its posts wait for the next slot."""
    _decide(config, "held")
