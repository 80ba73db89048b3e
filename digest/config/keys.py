"""Every config.yaml key with its type, default and description, read from the config sections."""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from digest.config.fields import Key, Section, keys_of
from digest.config.schema import Config


@dataclass(frozen=True)
class KeyDoc:
    """One config key as the editor writes it, e.g. `feeds[].url` or `smtp.dkim.selector`."""

    path: str
    type_text: str
    default: Any
    description: str
    required: bool
    model: type[Section] | None = None
    is_list: bool = False

    @property
    def has_default(self) -> bool:
        """Whether leaving the key out gives a value (including none at all)."""
        return not self.required


def nested_model(annotation: Any) -> tuple[type[Section] | None, bool]:
    """(model, is_list) when a field holds a section or a list of sections."""
    candidates = [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        candidates = [a for a in get_args(annotation) if a is not type(None)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate, False
        if get_origin(candidate) is list:
            inner = get_args(candidate)[0]
            if isinstance(inner, type) and issubclass(inner, Section):
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
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(key: Key) -> str:
    words = [f"{operator} {bound}" for operator, bound in key.rule.bounds()]
    if key.rule.min_length is not None:
        words.append(f"at least {key.rule.min_length}")
    return ", ".join(words)


def config_keys(model: type[Section] = Config, prefix: str = "") -> Iterator[KeyDoc]:
    """Every key the config accepts, depth first, in the order the sections declare them."""
    for field in keys_of(model):
        if field.rule.internal:
            continue
        key = f"{prefix}{field.key}"
        inner, is_list = nested_model(field.annotation)
        description = field.rule.description or (inner.__doc__ or "" if inner else "")
        if inner is not None and not description:
            description = (inner.__doc__ or "").strip()
        type_words = "list of sections" if is_list else _type_words(field.annotation)
        bounds = _bounds(field)
        yield KeyDoc(
            path=key + ("[]" if is_list else ""),
            type_text=f"{type_words} ({bounds})" if bounds else type_words,
            default=None if field.required else field.default(),
            description=description.strip(),
            required=field.required,
            model=inner,
            is_list=is_list,
        )
        if inner is not None:
            yield from config_keys(inner, f"{key}[]." if is_list else f"{key}.")
