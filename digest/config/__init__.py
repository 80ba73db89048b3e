"""The configuration: `config.yaml` read with file:line for every key, validated into frozen
dataclasses.

`yamlfile` reads YAML within bounds and remembers where each key stood; `fields` validates plain
values into typed dataclasses and collects every mistake at once; `schema` declares each section
of the config and loads it (`load_config`); `keys` lists the keys for the reference and for
suggestions on a misspelt one.
"""
