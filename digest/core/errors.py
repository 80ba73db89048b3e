"""Every error a user can cause or fix, with the exit code the CLI turns it into.

The CLI prints any `DigestError` as one line, never a traceback, and exits with its
`exit_code`:

| exit | class | meaning |
| --- | --- | --- |
| 1 | `DigestError` | a runtime failure, or work left pending (the default) |
| 1 | `SmtpError` | the mail server cannot be used (host, TLS, credentials, refusals) |
| 1 | `LockHeld` | another digest process holds a lock; the message says which |
| 1 | `Stopped` | a signal stopped a send before anything was frozen or sent |
| 1 | `StateError` | the state file cannot be used (corrupt, newer than this release, unwritable) |
| 2 | `ConfigError` | config.yaml, the subscriber file or a command's options are wrong |
| 2 | `TemplateError` | a template failed to load or render: file, line and what went wrong |

Exit code 0 means done, including "nothing new".
"""

from __future__ import annotations


class DigestError(Exception):
    """A failure a user can cause or fix; the CLI prints it as one line, never a traceback."""

    exit_code = 1


class ConfigError(DigestError):
    """The configuration, subscriber list or templates are wrong; exit code 2."""

    exit_code = 2


class TemplateError(ConfigError):
    """A template failed to load or render; names the file, line and what went wrong."""


class StateError(DigestError):
    """The state file cannot be opened, read or upgraded; says which file and what to do."""


class SmtpError(DigestError):
    """The server cannot be used: `temporary` when trying again later may help."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class LockHeld(DigestError):
    """Another process holds the lock; the message says who."""


class Stopped(DigestError):
    """SIGTERM or Ctrl-C stopped a send before its issue was frozen: nothing was sent."""
