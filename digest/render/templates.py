"""Template loading, rendering within bounds, and errors that name the template file and line.

Templates are the editor's, so a mistake in one must be an error, never a hang or a machine out
of memory. Rendering runs in Jinja2's sandbox (no private attributes, no unsafe methods) and is
bounded: at most MAX_OUTPUT_CHARACTERS of output, MAX_RENDER_SECONDS of time and MAX_LOOP_STEPS
steps of `range` in all. `*`, `**` and the `center`, `indent` and `format` filters refuse
results beyond the output bound, and the string methods that pad to a width are unavailable.
Going over any bound is a TemplateError naming the template and, where known, the line.
"""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import jinja2
import jinja2.exceptions
import jinja2.filters
from jinja2.sandbox import SandboxedEnvironment

from digest.core.errors import TemplateError
from digest.render.htmltext import collapse, shorten
from digest.render.loader import template_loader

TEXT_WIDTH = 78
MAX_OUTPUT_CHARACTERS = 5_000_000
MAX_RENDER_SECONDS = 10.0
MAX_LOOP_STEPS = 1_000_000
MAX_POWER = 10_000


class RenderBoundExceeded(Exception):
    """A template went over one of the rendering bounds."""


class _Budget:
    """The time and loop steps one render may still use."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.steps = MAX_LOOP_STEPS

    def spend(self, steps: int = 1) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise RenderBoundExceeded(f"more than {MAX_LOOP_STEPS:,} loop steps from range()")
        if time.monotonic() > self.deadline:
            raise RenderBoundExceeded(f"rendering took over {MAX_RENDER_SECONDS:.0f} seconds")


_PADDING_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"}
)
_NUMBER = re.compile(r"\d+")


def _too_long(size: int) -> bool:
    return size > MAX_OUTPUT_CHARACTERS


class BoundedEnvironment(SandboxedEnvironment):
    """A sandboxed environment whose renders are bounded in output, time and loop steps."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._budget: _Budget | None = None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """The sandbox's rule, minus the string methods that pad to any width."""
        if isinstance(obj, str) and attr in _PADDING_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """No str.format or format_map in templates: they pad to any width (use the filters)."""
        return None

    def bounded_range(self, *args: int) -> Iterator[int]:
        """range() for templates: every step counts against the render's budget."""
        budget = self._budget
        for number in range(*args):
            if budget is not None:
                budget.spend()
            yield number

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`*` and `**` that cannot build something bigger than the output bound."""
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER:
                raise RenderBoundExceeded(f"an exponent over {MAX_POWER:,}")
            return left**right
        for sequence, times in ((left, right), (right, left)):
            repeated = isinstance(sequence, str | list | tuple) and isinstance(times, int)
            if repeated and _too_long(len(sequence) * times):
                raise RenderBoundExceeded("a repeated string or list over the output bound")
        return left * right

    def render_bounded(self, name: str, context: Mapping[str, Any]) -> str:
        """Render `name`, stopping as soon as the output, time or loop bound is passed."""
        template = self.get_template(name)
        budget = _Budget()
        self._budget = budget
        chunks: list[str] = []
        size = 0
        # generate() returns a generator; throw() puts the error where the template stands.
        output = cast(Generator[str, None, None], template.generate(context))
        try:
            for chunk in output:
                size += len(chunk)
                if _too_long(size):
                    output.throw(
                        RenderBoundExceeded(f"output over {MAX_OUTPUT_CHARACTERS:,} characters")
                    )
                budget.spend(0)
                chunks.append(chunk)
        finally:
            self._budget = None
            output.close()
        return "".join(chunks)


def _bounded_center(value: str, width: int = 80) -> str:
    if _too_long(width):
        raise RenderBoundExceeded(f"center() wider than {MAX_OUTPUT_CHARACTERS:,}")
    return str(value).center(width)


def _bounded_indent(value: str, width: int | str = 4, *args: Any, **kwargs: Any) -> str:
    size = width if isinstance(width, int) else len(width)
    if _too_long(size * (str(value).count("\n") + 1)):
        raise RenderBoundExceeded("indent() result over the output bound")
    return str(jinja2.filters.do_indent(str(value), width, *args, **kwargs))


def _bounded_format(value: str, *args: Any, **kwargs: Any) -> str:
    if any(_too_long(int(number)) for number in _NUMBER.findall(str(value))):
        raise RenderBoundExceeded("format() with a width over the output bound")
    text = str(value) % (kwargs or args)
    if _too_long(len(text)):
        raise RenderBoundExceeded("format() result over the output bound")
    return text


def heading(text: str, char: str = "=") -> str:
    """Wrapped heading text with an underline as long as its longest line."""
    lines = textwrap.wrap(text, TEXT_WIDTH, break_long_words=False) or [""]
    return "\n".join(lines) + "\n" + char * min(TEXT_WIDTH, max(len(x) for x in lines))


@cache
def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept in a private per-user temp folder: each command starts faster."""
    try:
        return jinja2.FileSystemBytecodeCache()
    except RuntimeError:  # no usable private temp folder; compiling each time still works
        return None


def template_environment(templates_dir: Path) -> BoundedEnvironment:
    """The editor's templates/ folder first, then the bundled templates; strict, autoescaped,
    sandboxed and bounded."""
    env = BoundedEnvironment(
        loader=template_loader(templates_dir),
        autoescape=jinja2.select_autoescape(["html", "htm"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["heading"] = heading
    env.filters["center"] = _bounded_center
    env.filters["format"] = _bounded_format
    env.filters["indent"] = _bounded_indent
    env.globals["range"] = env.bounded_range
    return env


def _template_frame(traceback: TracebackType | None) -> tuple[str, int] | None:
    found = None
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if not filename.endswith(".py") and Path(filename).is_file():
            found = (filename, traceback.tb_lineno)
        traceback = traceback.tb_next
    return found


def _source_line(filename: str, line: int) -> str:
    try:
        lines = Path(filename).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _template_error(error: Exception, name: str, context: Mapping[str, Any]) -> TemplateError:
    available = ", ".join(sorted(context))
    if isinstance(error, jinja2.TemplateNotFound):
        return TemplateError(
            f"template {error.name!r} (needed by {name}) not found in the templates/ folder"
            f" beside config.yaml or the bundled templates"
        )
    if isinstance(error, jinja2.TemplateSyntaxError):
        where: tuple[str, int] | None = (error.filename or name, error.lineno)
        message = f"syntax error: {error.message}"
    else:
        where = _template_frame(error.__traceback__)
        readable = jinja2.UndefinedError | jinja2.exceptions.SecurityError | RenderBoundExceeded
        message = str(error) if isinstance(error, readable) else repr(error)
    if where is None:
        return TemplateError(f"{name}: {message}; available variables: {available}")
    filename, line = where
    source = _source_line(filename, line)
    shown = f" in `{shorten(collapse(source), 120)}`" if source else ""
    return TemplateError(f"{filename}:{line}: {message}{shown}; available variables: {available}")


def render_template(env: BoundedEnvironment, name: str, context: Mapping[str, Any]) -> str:
    """Render one template within the output and time bounds; any failure is a TemplateError."""
    try:
        return env.render_bounded(name, context)
    except TemplateError:
        raise
    except Exception as error:  # any failure inside a template is the template's fault
        raise _template_error(error, name, context) from None
