"""Every config.yaml key with its type, default and description, read from the config models."""

from __future__ import annotations

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
