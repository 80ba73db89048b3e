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

from digest.config.schema import load_config
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
