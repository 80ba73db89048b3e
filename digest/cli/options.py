"""What every command shares in reading its options: the config named by `--config`, the
clock (DIGEST_NOW overrides it for rehearsals and tests), and an address given on the command
line in the canonical form.

Nothing here imports a command module or the group, so each command module can use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from digest.config.schema import MetricsConfig, load_config, parse_listen
from digest.core.errors import DigestError

F = TypeVar("F", bound=Callable[..., Any])
NOW_VARIABLE = "DIGEST_NOW"


def current_time() -> datetime:
    """Now, in UTC; DIGEST_NOW (ISO 8601) overrides it for rehearsals and tests."""
    override = os.environ.get(NOW_VARIABLE)
    if not override:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(override)
    except ValueError:
        raise DigestError(f"{NOW_VARIABLE}={override!r} is not an ISO 8601 date and time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def with_config(function: F) -> F:
    """Load the config named by --config and pass it as the first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(function, load_config(ctx.obj), *args, **kwargs)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper  # type: ignore[return-value]


def email_address(value: str) -> str:
    """An address given on the command line, in the canonical form the state keeps."""
    from digest.core.addresses import AddressError, canonical_address

    try:
        return canonical_address(value)
    except AddressError as error:
        raise click.BadParameter(f"{value!r} is not an email address: {error}") from None


def metrics_listen_option(function: F) -> F:
    """`--metrics-listen HOST:PORT`: serve the metrics there instead of at `metrics.listen`
    (so that a `digest run` and a `digest serve` on one machine can each have a port)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_listen(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        return value.strip()

    return click.option(
        "--metrics-listen",
        metavar="HOST:PORT",
        callback=check,
        help="Serve Prometheus metrics here (default: config.yaml's metrics.listen; off if unset).",
    )(function)


def metrics_address(configured: MetricsConfig | None, given: str | None) -> tuple[str, int] | None:
    """Where to serve the metrics: --metrics-listen, else metrics.listen; None: off."""
    chosen = given or (configured.listen if configured else None)
    return parse_listen(chosen) if chosen else None
