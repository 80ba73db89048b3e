"""Generate docs/reference.md from the config models and the template variables, so it cannot drift.

Regenerate with `python -m digest.reference > docs/reference.md`.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from digest.config import Config


@dataclass(frozen=True)
class KeyDoc:
    """One config key as the editor writes it, e.g. `feeds[].url` or `smtp.dkim.selector`."""

    path: str
    type_text: str
    default: Any
    description: str
    required: bool
    model: type[BaseModel] | None = None
    is_list: bool = False

    @property
    def has_default(self) -> bool:
        """Whether leaving the key out gives a value (including none at all)."""
        return not self.required


def nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model, is_list) when a field holds a section or a list of sections."""
    candidates = [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        candidates = [a for a in get_args(annotation) if a is not type(None)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate, False
        if get_origin(candidate) is list:
            inner = get_args(candidate)[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
    return None, False


def _type_words(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        parts = [_type_words(a) for a in get_args(annotation) if a is not type(None)]
        return " or ".join(parts)
    if origin is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    if origin is list:
        return f"list of {_type_words(get_args(annotation)[0])}"
    names = {str: "text", int: "integer", float: "number", bool: "true/false"}
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            words.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length}")
    return ", ".join(words)


def default_of(field: FieldInfo) -> Any:
    """The field's default value (PydanticUndefined when required)."""
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[KeyDoc]:
    """Every key the config accepts, depth first, in the order the models declare them."""
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{field.alias or name}"
        inner, is_list = nested_model(field.annotation)
        description = field.description or (inner.__doc__ or "" if inner else "")
        if inner is not None and not description:
            description = (inner.__doc__ or "").strip()
        type_words = "list of sections" if is_list else _type_words(field.annotation)
        bounds = _bounds(field)
        default = default_of(field)
        yield KeyDoc(
            path=key + ("[]" if is_list else ""),
            type_text=f"{type_words} ({bounds})" if bounds else type_words,
            default=default,
            description=description.strip(),
            required=default is PydanticUndefined,
            model=inner,
            is_list=is_list,
        )
        if inner is not None:
            yield from config_keys(inner, f"{key}[]." if is_list else f"{key}.")


def _show_default(key: KeyDoc) -> str:
    if key.required:
        return "**required**"
    if key.model is not None and not key.is_list:
        return "(section)" if key.default is not None else "none"
    value = key.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[]`" if not value else f"`{value}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def template_variables() -> list[tuple[str, str]]:
    """(name, description) of every variable the templates can use, from render's table."""
    from digest import render

    table = getattr(render, "TEMPLATE_VARIABLES", None)
    if not table:
        return []
    return [(str(name), str(description)) for name, description in dict(table).items()]


def template_files() -> list[str]:
    """Names of the bundled template files."""
    from digest.loader import bundled_template_names

    return bundled_template_names()


def template_section() -> list[str]:
    """The bundled templates, the override rules and the blocks an editor can override."""
    from digest.loader import OVERRIDE_RULES, README_EXAMPLE, TEMPLATE_BLOCKS

    lines = ["## Templates", "", "The bundled templates:", ""]
    lines += [f"- `{name}`" for name in template_files()]
    lines += ["", "### Overriding them", ""]
    lines += [f"- {rule}" for rule in OVERRIDE_RULES]
    lines += [
        "",
        "For example, `templates/email.html` adding a line above the bundled footer:",
        "",
        "```jinja",
        *README_EXAMPLE.splitlines(),
        "```",
        "",
        "`digest init` leaves `templates/` empty (with a README.txt saying this);"
        " `digest init --templates` copies every bundled template there instead.",
        "",
        "### Blocks",
        "",
        "Blocks of the bundled email.html and email.txt that a template extending"
        ' `"bundled/email.html"` or `"bundled/email.txt"` can override. Every block can use'
        " every template variable (below); `section` and `post` blocks also see the current"
        " `section` and `post`. *Uses* lists what the bundled content shows. Overriding a block"
        " without `{{ super() }}` replaces the blocks nested in it too.",
        "",
        "| Template | Block | Inside | Contains | Uses |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| `{block.template}` | `{block.name}` | {_cell(block.inside)} |"
        f" {_cell(block.contains)} | {_cell(block.uses)} |"
        for block in TEMPLATE_BLOCKS
    ]
    return lines


def commands() -> list[tuple[str, str]]:
    """(name, first line of help) of every `digest` command."""
    from digest.cli import main

    return [
        (name, (command.help or "").strip().splitlines()[0])
        for name, command in sorted(main.commands.items())
    ]


def generate() -> str:
    """The whole of docs/reference.md."""
    lines = [
        "# Reference",
        "",
        "<!-- Generated by `python -m digest.reference > docs/reference.md`;"
        " edit the descriptions in digest/config.py, digest/render.py and digest/loader.py"
        " instead. -->",
        "",
        "## config.yaml",
        "",
        "Every key `config.yaml` accepts. Paths are relative to the folder holding config.yaml."
        " Any value may use `${VARIABLE}` or `${VARIABLE:-default}` to read the environment."
        " `digest init` writes a config.yaml with every key and its default, commented.",
        "",
    ]
    current = ""
    for key in config_keys():
        top = key.path.split(".", 1)[0].removesuffix("[]")
        if top != current:
            current = top
            lines += ["", f"### `{top}`", "", "| Key | Type | Default | Description |"]
            lines += ["| --- | --- | --- | --- |"]
        lines.append(
            f"| `{key.path}` | {_cell(key.type_text)} | {_cell(_show_default(key))} |"
            f" {_cell(key.description)} |"
        )
    lines += ["", *template_section()]
    lines += ["", "## Template variables", ""]
    variables = template_variables()
    if variables:
        lines += [
            "Templates are Jinja2 with autoescaping and strict undefined variables: a misspelt"
            " name is an error naming the file, line and the variables available.",
            "",
            "| Variable | Description |",
            "| --- | --- |",
        ]
        lines += [f"| `{_cell(name)}` | {_cell(text)} |" for name, text in variables]
    else:
        lines.append("The renderer publishes no variable table yet.")
    lines += ["", "## Commands", "", "Run `digest COMMAND --help` for every option.", ""]
    lines += ["| Command | What it does |", "| --- | --- |"]
    lines += [f"| `digest {name}` | {_cell(text)} |" for name, text in commands()]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate())
