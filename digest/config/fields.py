"""Config sections as frozen dataclasses, validated from YAML data or keyword arguments.

Not pydantic, for start-up time: importing it and building the config models was about 0.16 s
of `import digest.config.schema`. On a 2-core x86_64 VM with Python 3.11 (medians of 8 runs, in two
rounds), `import digest.config.schema` takes 0.10 s with this module against 0.22-0.23 s with
pydantic, and `import digest.cli` 0.29 s against 0.39-0.40 s.

A section subclasses `Section` and declares each key with `setting()`: its default or factory,
description, bounds (ge, gt, le, lt, min_length), a `before` function given the value as
written (e.g. '6h' to seconds) and `after` functions given the typed value, each of which may
raise ValueError. `check()` holds cross-key rules; it runs once every key of the section is
valid. Validation does not stop at the first mistake: every problem is collected with its key
path (list items by index), as `Problem`s. Built in code, a section's keyword arguments are
validated the same way (SettingsError, a ValueError); an unknown or missing argument is a
TypeError, as for any dataclass.

What each type accepts is what the config accepted before this module, so nothing that loaded
then is refused now:

- str: text only, not numbers or true/false (YAML's !!binary, once decoded, is now refused).
- int: whole numbers, true/false (1/0), floats without a fraction, and strings such as "30",
  " 30 ", "+30", "1_000" or "30.0"; not 30.5, "3e1" or infinity.
- float: numbers, true/false, and numeric strings as Python's float() reads them, ASCII only
  (".5", "1e3", "inf", "nan").
- bool: true/false, 0/1 (also 0.0/1.0) and, in any case, the strings true/false, yes/no,
  on/off, y/n, t/f and 1/0.
- Literal[...]: one of the listed values exactly; X | None: None or an X; list[X]: a list of
  X; a Section: a mapping of its keys, or an instance as is; Path: a path or text.

Defaults are trusted, not validated, as before: a default may stay an int where the key is a
float.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import (
    Any,
    ClassVar,
    Literal,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
    get_type_hints,
)

Loc = tuple[str | int, ...]
S = TypeVar("S", bound="Section")

_WHOLE = re.compile(r"[+-]?\d+(?:_\d+)*(?:\.0+)?", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[\d_.]+(?:e[+-]?[\d_]+)?|inf|infinity|nan)", re.ASCII | re.I)
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
# Each bound: its symbol, how an error words it, and the test a value must pass.
_BOUNDS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    ">": ("greater than", operator.gt),
    ">=": ("greater than or equal to", operator.ge),
    "<": ("less than", operator.lt),
    "<=": ("less than or equal to", operator.le),
}


class _Invalid:
    """Stands for a value that failed validation; its problems are already recorded."""


INVALID = _Invalid()


@dataclasses.dataclass(frozen=True)
class Rule:
    """What `setting()` declared about one key beyond its type and default."""

    description: str = ""
    key: str | None = None
    internal: bool = False
    gt: int | float | None = None
    ge: int | float | None = None
    lt: int | float | None = None
    le: int | float | None = None
    min_length: int | None = None
    before: Callable[[Any], Any] | None = None
    after: tuple[Callable[[Any], Any], ...] = ()

    def bounds(self) -> Iterator[tuple[str, int | float]]:
        """(operator, bound) for each numeric bound declared, e.g. ('>=', 1)."""
        for symbol, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)):
            if bound is not None:
                yield symbol, bound


def setting(
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | None = None,
    description: str = "",
    key: str | None = None,
    internal: bool = False,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    before: Callable[[Any], Any] | None = None,
    after: tuple[Callable[[Any], Any], ...] = (),
) -> Any:
    """One key of a section: `key` if the YAML names it otherwise, `internal` if YAML cannot."""
    rule = Rule(description, key, internal, gt, ge, lt, le, min_length, before, after)
    metadata = {"rule": rule}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One mistake: where (the key path), what kind, the value given and, for some, a detail."""

    loc: Loc
    kind: str
    given: Any = None
    detail: str = ""

    def text(self, shown: str | None = None) -> str:
        """The mistake in words, naming the value given as `shown` when that is set."""
        given: Any = _Shown(shown) if shown is not None else self.given
        kind, detail = self.kind, self.detail
        if kind == "missing":
            return "required key is missing"
        if kind == "unknown":
            return f"unknown key; valid keys here are: {detail}"
        if kind == "whole_number":
            return f"expected a whole number, got {given!r}"
        if kind == "number":
            return f"expected a number, got {given!r}"
        if kind == "bool":
            return f"expected true or false, got {given!r}"
        if kind == "text":
            return f"expected text, got {given!r}"
        if kind == "list":
            return "expected a list (lines starting with '- ')"
        if kind == "mapping":
            return "expected a mapping of keys (key: value lines, indented)"
        if kind == "choice":
            return f"expected one of {detail}, got {given!r}"
        if kind == "too_short":
            return (
                "needs at least one entry" if detail == "1" else f"needs {detail} entries or more"
            )
        if kind == "bound":
            return f"input should be {detail}, got {given!r}"
        if shown is not None and isinstance(self.given, str) and self.given:
            return detail.replace(repr(self.given), shown).replace(self.given, shown)
        return detail


class _Shown:
    """Stands for a value that must not be printed: its repr is how the error names it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def dotted(path: Loc) -> str:
    """A key path as the editor writes it: feeds[0].url."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class SettingsError(ValueError):
    """Every problem found validating one section, in the order found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{dotted(p.loc)}: {p.text()}" for p in problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of a section, ready to validate: its field, YAML name, type and rule."""

    name: str
    key: str
    annotation: Any
    rule: Rule
    field: dataclasses.Field[Any]

    @property
    def required(self) -> bool:
        """Whether the key must be given."""
        return (
            self.field.default is dataclasses.MISSING
            and self.field.default_factory is dataclasses.MISSING
        )

    def default(self) -> Any:
        """The value a key left out gets (dataclasses.MISSING when required)."""
        if self.field.default_factory is not dataclasses.MISSING:
            return self.field.default_factory()
        return self.field.default


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
class Section:
    """Base of a config section: a frozen keyword-only dataclass whose arguments are validated."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__(**options)
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        for key in keys_of(type(self)):
            value = getattr(self, key.name)
            if value is not key.field.default:
                checked = _value(key, value, (key.name,), problems)
                if checked is not value and checked is not INVALID:
                    object.__setattr__(self, key.name, checked)
        if not problems:
            _check(self, (), problems)
        if problems:
            raise SettingsError(problems)

    def check(self) -> None:
        """Rules across keys, run once each key is valid: raise ValueError to refuse."""


_KEYS: dict[type[Section], tuple[Key, ...]] = {}


def keys_of(cls: type[Section]) -> tuple[Key, ...]:
    """The keys of a section in declaration order, type annotations resolved (once)."""
    if cls not in _KEYS:
        hints = get_type_hints(cls)
        found = []
        for item in dataclasses.fields(cls):
            rule = item.metadata.get("rule", Rule())
            found.append(Key(item.name, rule.key or item.name, hints[item.name], rule, item))
        _KEYS[cls] = tuple(found)
    return _KEYS[cls]


def valid_keys(cls: type[Section]) -> str:
    """The YAML names of a section's keys, for an unknown key's error."""
    return ", ".join(key.key for key in keys_of(cls) if not key.rule.internal)


def validate(cls: type[S], data: Any) -> S:
    """A section from YAML data; SettingsError lists every problem, in the order found."""
    problems: list[Problem] = []
    section = _section(cls, data, (), problems)
    if problems or isinstance(section, _Invalid):
        raise SettingsError(problems)
    return section


def _section(cls: type[S], data: Any, loc: Loc, problems: list[Problem]) -> S | _Invalid:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        problems.append(Problem(loc, "mapping", data))
        return INVALID
    start = len(problems)
    values: dict[str, Any] = {}
    used: set[Any] = set()
    for key in keys_of(cls):
        name = key.key if key.key in data else key.name
        if name not in data:
            if key.required:
                problems.append(Problem((*loc, key.key), "missing"))
            else:
                values[key.name] = key.default()
            continue
        used.add(name)
        values[key.name] = _value(key, data[name], (*loc, name), problems)
    for name in data:
        if name not in used:
            if isinstance(name, str):
                problems.append(Problem((*loc, name), "unknown", data[name], valid_keys(cls)))
            else:
                where = name if isinstance(name, int) else str(name)
                problems.append(Problem((*loc, where), "invalid", name, "Keys should be strings"))
    if len(problems) > start:
        return INVALID
    section = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(section, name, value)
    _check(section, loc, problems)
    return INVALID if len(problems) > start else section


def _check(section: Section, loc: Loc, problems: list[Problem]) -> None:
    try:
        section.check()
    except ValueError as error:
        problems.append(Problem(loc, "invalid", None, str(error)))


def _value(key: Key, given: Any, loc: Loc, problems: list[Problem]) -> Any:
    """One key's value checked: `before`, the type, the bounds, then each `after`."""
    rule = key.rule
    if rule.before is not None:
        try:
            given = rule.before(given)
        except ValueError as error:
            problems.append(Problem(loc, "invalid", given, str(error)))
            return INVALID
    value = _typed(key.annotation, given, loc, problems)
    if value is INVALID:
        return INVALID
    if value is not None:  # bounds apply to a value, not to an optional key left empty
        if rule.min_length is not None and len(value) < rule.min_length:
            problems.append(Problem(loc, "too_short", given, str(rule.min_length)))
            return INVALID
        for symbol, bound in rule.bounds():
            words, passes = _BOUNDS[symbol]
            if not passes(value, bound):
                problems.append(Problem(loc, "bound", given, f"{words} {bound}"))
                return INVALID
    for after in rule.after:
        try:
            value = after(value)
        except ValueError as error:
            problems.append(Problem(loc, "invalid", given, str(error)))
            return INVALID
    return value


def _typed(annotation: Any, given: Any, loc: Loc, problems: list[Problem]) -> Any:
    """`given` as `annotation` says, or INVALID with the problem recorded."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        if given is None and type(None) in get_args(annotation):
            return None
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return _typed(inner, given, loc, problems)
    if origin is Literal:
        choices = get_args(annotation)
        if isinstance(given, str) and given in choices:
            return given
        words = [str(choice) for choice in choices]
        listed = f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]
        problems.append(Problem(loc, "choice", given, listed))
        return INVALID
    if origin is list:
        if not isinstance(given, list | tuple):
            problems.append(Problem(loc, "list", given))
            return INVALID
        (inner,) = get_args(annotation)
        items = [_typed(inner, item, (*loc, n), problems) for n, item in enumerate(given)]
        return INVALID if any(item is INVALID for item in items) else items
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return _section(annotation, given, loc, problems)
    try:
        return _READERS[annotation](given)
    except _Refused as refused:
        problems.append(Problem(loc, refused.kind, given, refused.detail))
        return INVALID


class _Refused(Exception):
    """A value a plain type cannot take: the problem's kind and, for some kinds, a detail."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


def _text(given: Any) -> str:
    if isinstance(given, str):
        return given
    raise _Refused("text")


def _whole(given: Any) -> int:
    if isinstance(given, int):  # true and false too, as 1 and 0
        return int(given)
    if isinstance(given, float) and not math.isfinite(given):
        raise _Refused("invalid", "Input should be a finite number")
    if isinstance(given, float) and given.is_integer():
        return int(given)
    if isinstance(given, str) and _WHOLE.fullmatch(given.strip()):
        return int(given.strip().split(".")[0])
    raise _Refused("whole_number")


def _number(given: Any) -> float:
    try:
        if isinstance(given, int | float):
            return float(given)
        if isinstance(given, str) and _NUMBER.fullmatch(given.strip()):
            return float(given)
    except (OverflowError, ValueError):
        pass
    raise _Refused("number")


def _truth(given: Any) -> bool:
    if isinstance(given, bool):
        return given
    if isinstance(given, int | float) and given in (0, 1):
        return bool(given)
    if isinstance(given, str) and given.lower() in _TRUE | _FALSE:
        return given.lower() in _TRUE
    raise _Refused("bool")


def _path(given: Any) -> Path:
    if isinstance(given, str | Path):
        return Path(given)
    raise _Refused("text")


_READERS: dict[Any, Callable[[Any], Any]] = {
    str: _text,
    int: _whole,
    float: _number,
    bool: _truth,
    Path: _path,
}
