"""The `digest` command: options parsed, the library called, `DigestError`s turned into one line
and an exit code.

One module per command group, each defining its commands with `click.command` and importing
nothing of the group: `setup` (init, check, demo, serve), `issue` (preview, posts, note, leave-out,
pin, mark-seen), `send` (send, history), `schedule` (schedule, run, approve, hold), `readers`
(subscribers and its subcommands, unsubscribe, resubscribe, snippet), `bounces`, `archive` (and
its subcommands). `main` defines the group, with `--config`, `--verbose` and the handling of
`DigestError`, and adds every command to it with `main.add_command`: it is the only module that
imports the command modules, and the only way to the whole command
(`from digest.cli.main import main`). `options` holds what commands share in reading their
options (the config, the clock, an address); `output` what they print (consoles, counts, the send's
progress). `scaffold` writes a new newsletter's files (`digest init`); `reference` generates the
config and template reference from the code.
"""
