"""The `digest` command: options parsed, the library called, `DigestError`s turned into one line
and an exit code.

`commands` defines every command; `scaffold` writes a new newsletter's files (`digest init`);
`reference` generates the config and template reference from the code.
"""
