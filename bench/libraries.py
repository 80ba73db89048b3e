"""Three hand-written parts of digest beside the well-kept libraries that could replace them.

The project's rule: where a well-kept library does the job, use it rather than writing it by
hand, or write down the measurement that says otherwise. This script is that measurement, with
digest's figure beside each library's from the same run:

1. Config validation (digest.config.fields and the sections in digest.config.schema) against
msgspec and
   pydantic 2. Both libraries get digest's own schema, translated key by key (types, defaults,
   bounds, the YAML name of `from`, the conversions such as '6h' to seconds, the cross-key
   rules), so they validate the same file to the same values; the script checks that they do.
   Measured: import time, building the sections, validating the bundled config.yaml, which
   values written today each still accepts, and the error each gives for broken configs.
2. Cron parsing (digest.core.cron, with the fire times digest.run.slots works out) against cronsim:
   digest's tested cases through both, the next 1,000 fire times, import time, and the error
   for each bad expression the tests use.
3. Purpose tokens (digest.core.tokens) against itsdangerous's URLSafeTimedSerializer (salt = the
   purpose) and, as the library that also encrypts, cryptography's Fernet: sign and verify per
   token at 100,000 tokens, import time, length, and whether the address can be read back.

Import times are medians of 20 fresh interpreters, the candidates' runs interleaved, each timed
from inside the interpreter around the import alone, once the standard library modules every
digest command loads are loaded: what the import adds to a command. docs/decisions.md records
what was decided from these figures.

    python bench/libraries.py           # about a minute on two cores
    python bench/libraries.py --quick   # fewer runs, for checking the script itself
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import operator
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest import tokens  # noqa: E402
from digest.config.fields import Key, Section, dotted, keys_of, validate  # noqa: E402
from digest.config.schema import Config, _expand_env, _Expansion, load_config  # noqa: E402
from digest.config.yamlfile import load_yaml  # noqa: E402
from digest.core.cron import parse_cron  # noqa: E402
from digest.core.errors import ConfigError  # noqa: E402

BUNDLED_CONFIG = ROOT / "config.yaml"
LONDON = ZoneInfo("Europe/London")
SECRET = "bench-secret-0123456789abcdef"
SIGNS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}

# Loaded before any import is timed, in every interpreter: the standard library modules that
# `import digest.cli.main` loads anyway, and the digest package itself. A figure is then what
# the
# module adds to a digest command, not what Python's own modules cost whoever imports them first.
ALREADY_LOADED = """\
import base64, binascii, calendar, collections.abc, dataclasses, datetime, enum, hashlib, hmac
import json, math, operator, os, pathlib, re, time, types, typing, urllib.parse, zoneinfo
import digest
"""
# What digest.config.schema imports besides digest.config.fields, loaded first for the config
# figures, so
# that each is the validator and the schema alone.
CONFIG_DEPENDENCIES = (
    ALREADY_LOADED
    + "import yaml, digest.core.cron, digest.core.errors, digest.core.headervalues\n"
    + "import digest.core.redact\n"
    + "import digest.config.yamlfile\n"
)


# -- figures and tables ---------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1_000_000:.1f} µs"


def table(rows: list[tuple[str, ...]], indent: str = "  ") -> None:
    """Rows as aligned columns, the first row as the header."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for number, row in enumerate(rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print((indent + "  ".join(cells)).rstrip())
        if number == 0:
            print(indent + "  ".join("-" * width for width in widths))


def interpreter_timings(setup: str, statements: list[str]) -> list[float]:
    """Seconds each statement takes in one fresh interpreter, in order, after `setup`."""
    lines = [setup, "import time as _time", "_spent = []"]
    for statement in statements:
        lines += ["_started = _time.perf_counter()", statement]
        lines.append("_spent.append(_time.perf_counter() - _started)")
    lines.append("print(' '.join(repr(s) for s in _spent))")
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"a timing run failed:\n{done.stderr}")
    return [float(part) for part in done.stdout.split()]


def import_medians(
    candidates: dict[str, tuple[str, list[str]]], runs: int
) -> dict[str, list[float]]:
    """Per candidate, the median seconds of each of its statements over `runs` interpreters,
    the candidates' runs interleaved so that drift in the machine's speed falls on all alike."""
    samples: dict[str, list[list[float]]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, (setup, statements) in candidates.items():
            samples[name].append(interpreter_timings(setup, statements))
    return {
        name: [statistics.median(run[n] for run in taken) for n in range(len(taken[0]))]
        for name, taken in samples.items()
    }


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of one call of each candidate, called in turn `rounds` times."""
    spent: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, call in candidates.items():
            started = time.perf_counter()
            call()
            spent[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in spent.items()}


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -- 1. config validation: digest's schema, translated for msgspec and pydantic ---------------


def _optional_inner(annotation: Any) -> Any | None:
    """X for `X | None`, else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        if type(None) in args:
            (inner,) = [arg for arg in args if arg is not type(None)]
            return inner
    return None


def _translated(annotation: Any, section: Callable[[type[Section]], type]) -> Any:
    """`annotation` with every digest Section replaced by the library's class for it."""
    inner = _optional_inner(annotation)
    if inner is not None:
        return Union[_translated(inner, section), None]  # noqa: UP007 (built at run time)
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return list[_translated(item, section)]  # type: ignore[misc]
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return section(annotation)
    return annotation


def _bounds(key: Key) -> dict[str, Any]:
    names = ("gt", "ge", "lt", "le", "min_length")
    return {name: getattr(key.rule, name) for name in names if getattr(key.rule, name) is not None}


def _default(key: Key, section: Callable[[type[Section]], type]) -> dict[str, Any]:
    """The key's default as the library's field arguments; a section default becomes the
    library's class for that section, called with no arguments."""
    factory = key.field.default_factory
    if factory is not dataclasses.MISSING:
        if isinstance(factory, type) and issubclass(factory, Section):
            return {"default_factory": section(factory)}
        return {"default_factory": factory}
    if key.field.default is not dataclasses.MISSING:
        return {"default": key.field.default}
    return {}


def _members(cls: type[Section]) -> dict[str, Any]:
    """The section's properties (heading, public_url...), which its `check` may use."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        found.update({n: m for n, m in vars(klass).items() if isinstance(m, property)})
    return found


def digest_config() -> type[Section]:
    """digest's Config built again from its own schema, the way the libraries' are below, so
    that the three class-building figures are of the same work."""
    from digest.config.fields import setting

    built: dict[type[Section], type[Section]] = {}

    def section(cls: type[Section]) -> type[Section]:
        if cls in built:
            return built[cls]
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {"__module__": __name__, "__doc__": cls.__doc__}
        namespace.update(_members(cls))
        for key in keys_of(cls):
            annotations[key.name] = _translated(key.annotation, section)
            rule = key.rule
            namespace[key.name] = setting(
                **_default(key, section),
                **_bounds(key),
                description=rule.description,
                key=rule.key,
                internal=rule.internal,
                before=rule.before,
                after=rule.after,
            )
        if "check" in vars(cls):
            namespace["check"] = vars(cls)["check"]
        namespace["__annotations__"] = annotations
        built[cls] = type(cls.__name__, (Section,), namespace)
        return built[cls]

    return section(Config)


def pydantic_config() -> type:
    """digest's Config as pydantic 2 models, built the way a hand-written schema would be."""
    from pydantic import (
        AfterValidator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        model_validator,
    )

    built: dict[type[Section], type] = {}

    def model(cls: type[Section]) -> type:
        if cls in built:
            return built[cls]
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {
            "__module__": __name__,
            "__doc__": cls.__doc__,
            "model_config": ConfigDict(extra="forbid", frozen=True, populate_by_name=True),
            **_members(cls),
        }
        for key in keys_of(cls):
            hooks: list[Any] = [BeforeValidator(key.rule.before)] if key.rule.before else []
            hooks += [AfterValidator(after) for after in key.rule.after]
            annotation = _translated(key.annotation, model)
            annotations[key.name] = Annotated[(annotation, *hooks)] if hooks else annotation
            alias = {"alias": key.key} if key.key != key.name else {}
            namespace[key.name] = Field(**_default(key, model), **_bounds(key), **alias)
        if "check" in vars(cls):
            rule = vars(cls)["check"]

            def cross_keys(self: Any, rule: Callable[[Any], None] = rule) -> Any:
                rule(self)
                return self

            namespace["cross_keys"] = model_validator(mode="after")(cross_keys)
        namespace["__annotations__"] = annotations
        built[cls] = type(cls.__name__, (BaseModel,), namespace)
        return built[cls]

    return model(Config)


def msgspec_config() -> type:
    """digest's Config as msgspec Structs. msgspec has no per-key hooks: the conversions and
    checks digest runs per key (durations, addresses, URLs, cron, zones) and the cross-key
    rules run in __post_init__, and a key with a conversion accepts its written text too."""
    import msgspec

    built: dict[type[Section], type] = {}

    def struct(cls: type[Section]) -> type:
        if cls in built:
            return built[cls]
        fields: list[tuple[Any, ...]] = []
        hooked: list[Key] = []
        for key in keys_of(cls):
            annotation = _translated(key.annotation, struct)
            bounds = _bounds(key)
            if bounds:
                meta = msgspec.Meta(**bounds)
                inner = _optional_inner(annotation)
                annotation = (
                    Union[Annotated[inner, meta], None]  # noqa: UP007
                    if inner is not None
                    else Annotated[annotation, meta]
                )
            if key.rule.before is not None:
                annotation = Union[annotation, str]  # noqa: UP007 ('6h', converted below)
            if key.rule.before is not None or key.rule.after:
                hooked.append(key)
            default = _default(key, struct)
            if "default_factory" in default:
                fields.append((key.name, annotation, msgspec.field(**default)))
            elif "default" in default:
                fields.append((key.name, annotation, default["default"]))
            else:
                fields.append((key.name, annotation))
        rule = vars(cls).get("check")

        def __post_init__(self: Any, hooked: list[Key] = hooked, rule: Any = rule) -> None:
            for key in hooked:
                value = getattr(self, key.name)
                if value is key.field.default:
                    continue  # left out: defaults are trusted, as in digest
                try:
                    if key.rule.before is not None and isinstance(value, str):
                        value = key.rule.before(value)
                        for sign, bound in key.rule.bounds():
                            if not SIGNS[sign](value, bound):
                                raise ValueError(f"must be {sign} {bound}")
                    for after in key.rule.after:
                        value = after(value)
                except ValueError as error:
                    raise ValueError(f"{key.key}: {error}") from None
                msgspec.structs.force_setattr(self, key.name, value)
            if rule is not None:
                rule(self)

        renamed = {key.name: key.key for key in keys_of(cls) if key.key != key.name}
        built[cls] = msgspec.defstruct(
            cls.__name__,
            fields,
            namespace={**_members(cls), "__post_init__": __post_init__},
            module=__name__,
            kw_only=True,
            frozen=True,
            forbid_unknown_fields=True,
            rename=renamed or None,
        )
        return built[cls]

    return struct(Config)


def plain(value: Any) -> Any:
    """A validated config (digest's, pydantic's or msgspec's) as nested dicts, by field name."""
    if isinstance(value, Section):
        return {key.name: plain(getattr(value, key.name)) for key in keys_of(type(value))}
    fields = getattr(type(value), "__struct_fields__", None) or getattr(
        type(value), "model_fields", None
    )
    if fields is not None:
        return {name: plain(getattr(value, name)) for name in fields}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def differences(first: Any, second: Any, path: str = "") -> list[str]:
    if isinstance(first, dict) and isinstance(second, dict):
        found = []
        for name in first.keys() | second.keys():
            found += differences(first.get(name), second.get(name), f"{path}.{name}")
        return found
    if isinstance(first, list) and isinstance(second, list) and len(first) == len(second):
        return [d for pair in zip(first, second, strict=True) for d in differences(*pair, path)]
    return [] if first == second else [f"{path.lstrip('.')}: {first!r} != {second!r}"]


def config_data(text: str) -> dict[str, Any]:
    """What digest's loader hands its validator: the YAML read with its bounds, ${VAR}s
    expanded (none set: their defaults), and the two keys the loader adds."""
    data = load_yaml(text, "config.yaml").data
    data = _expand_env(data, (), {}, _Expansion())
    return {**data, "base_dir": ROOT, "source": "config.yaml"}


def bundled_data() -> dict[str, Any]:
    """The bundled config.yaml as digest's loader hands it to the validator."""
    return config_data(BUNDLED_CONFIG.read_text(encoding="utf-8"))


def validate_with_schema(name: str, schema: type, data: dict[str, Any]) -> Any:
    """`data` validated by one validator with its classes for the config (`schema`)."""
    if name == "digest":
        return validate(schema, data)
    if name == "msgspec":
        import msgspec

        return msgspec.convert(data, schema, strict=False)
    return schema.model_validate(data)  # type: ignore[attr-defined]


def validators(pydantic_model: type, msgspec_struct: type) -> dict[str, Callable[[Any], Any]]:
    schemas = {"digest": Config, "msgspec": msgspec_struct, "pydantic": pydantic_model}
    return {
        name: (lambda data, name=name, schema=schema: validate_with_schema(name, schema, data))
        for name, schema in schemas.items()
    }


@dataclasses.dataclass(frozen=True)
class Broken:
    """A broken config: how it differs from the bundled one, and what a good error names."""

    what: str
    edit: Callable[[str], str]
    path: tuple[str | int, ...]
    hint: tuple[str, ...]  # a good error contains one of these (what to write instead)
    line_of: str  # the text of the line the mistake is on


BROKEN = (
    Broken(
        "wrong type on a nested key: feeds[1].max_posts: lots",
        lambda text: text.replace(
            "    url: digest/samples/news.atom",
            "    url: digest/samples/news.atom\n    max_posts: lots",
        ),
        ("feeds", 1, "max_posts"),
        ("whole number", "integer", "`int"),
        "    max_posts: lots",
    ),
    Broken(
        "unknown key, a typo: digest.max_post_per_section",
        lambda text: text.replace("max_posts_per_section", "max_post_per_section"),
        ("digest", "max_post_per_section"),
        ("max_posts_per_section",),
        "  max_post_per_section: 10",
    ),
    Broken(
        "missing required key: newsletter.from",
        lambda text: text.replace('  from: "Collaborate CIC <digest@example.org>"\n', ""),
        ("newsletter", "from"),
        ("from",),
        "newsletter:",
    ),
    Broken(
        "a secret of the wrong type: secret: 8412675309 (must not be echoed)",
        lambda text: text + "secret: 8412675309\n",
        ("secret",),
        ("text", "string", "`str"),
        "secret: 8412675309",
    ),
)


def error_text(name: str, error: Exception) -> str:
    if name == "pydantic":
        return "\n".join(
            line for line in str(error).splitlines() if "errors.pydantic.dev" not in line
        )
    return str(error)


def reported_paths(name: str, error: Exception) -> list[str]:
    """The key paths an error names, in digest's dotted form."""
    if name == "digest":
        return [line.split(": ", 2)[1] for line in str(error).splitlines()]
    if name == "pydantic":
        return [dotted(tuple(item["loc"])) for item in error.errors()]  # type: ignore[attr-defined]
    text = str(error)  # msgspec: 'Object missing required field `from` - at `$.newsletter`'
    where = text.rpartition(" - at `$")[2].rstrip("`").lstrip(".")
    field = text.partition("field `")[2].partition("`")[0]
    return [f"{where}.{field}" if field else where]


def config_comparison(quick: bool) -> None:
    print("\n1. Config validation: digest.config.fields against msgspec and pydantic")
    print(
        f"   msgspec {version('msgspec')}, pydantic {version('pydantic')}"
        f" (pydantic-core {version('pydantic-core')})"
    )
    runs = 5 if quick else 20
    setup = CONFIG_DEPENDENCIES + "import digest.config.schema\nfrom bench import libraries\n"

    def then_validate(name: str) -> list[str]:
        # Read untimed (its figure is dropped), then the first validation: a validator may
        # finish building its classes then, as digest's and msgspec's do.
        read = "data = libraries.bundled_data()"
        return [read, f"libraries.validate_with_schema({name!r}, schema, data)"]

    medians = import_medians(
        {
            "digest": (
                CONFIG_DEPENDENCIES,
                [
                    "import digest.config.fields",
                    "import digest.config.schema",
                    "from bench import libraries",
                    "schema = libraries.digest_config()",
                    *then_validate("digest"),
                ],
            ),
            "msgspec": (
                setup,
                [
                    "import msgspec",
                    "schema = libraries.msgspec_config()",
                    *then_validate("msgspec"),
                ],
            ),
            "pydantic": (
                setup,
                [
                    "from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict,"
                    " Field, model_validator",
                    "schema = libraries.pydantic_config()",
                    *then_validate("pydantic"),
                ],
            ),
        },
        runs,
    )
    whole_module = medians["digest"][1]
    figures = {
        "digest": [medians["digest"][n] for n in (0, 3, 5)],
        "msgspec": [medians["msgspec"][n] for n in (0, 1, 3)],
        "pydantic": [medians["pydantic"][n] for n in (0, 1, 3)],
    }
    sections = _all_sections()
    keys = sum(len(keys_of(cls)) for cls in sections)
    print(
        f"\n   Import, build the {len(sections)} sections ({keys} keys) from digest's schema and"
        f" validate config.yaml once,\n   median of {runs} fresh interpreters (what"
        " digest.config.schema imports besides its validator loaded first):"
    )
    digest_total = sum(figures["digest"])
    rows = [("", "import", "build", "first validation", "together", "beside digest")]
    for name, (imported, built, first) in figures.items():
        together = imported + built + first
        extra = together - digest_total
        beside = "-" if name == "digest" else f"{'+' if extra >= 0 else ''}{ms(extra)}"
        rows.append((name, ms(imported), ms(built), ms(first), ms(together), beside))
    table(rows, "   ")
    print(
        "   `import digest.config.schema` as a whole (sections, checks, loader):"
        f" {ms(whole_module)}."
        " Every command\n   pays these; the preview of an unchanged issue has 400 ms in all."
    )

    pydantic_model, msgspec_struct = pydantic_config(), msgspec_config()
    validate_with = validators(pydantic_model, msgspec_struct)
    text = BUNDLED_CONFIG.read_text(encoding="utf-8")
    data = config_data(text)
    reference = plain(validate(Config, data))
    if differences(reference, plain(validate(digest_config(), data))):
        raise SystemExit("digest's sections built again do not read config.yaml as digest does")
    same = {name: differences(reference, plain(call(data))) for name, call in validate_with.items()}
    reps = 20 if quick else 200
    loads = reps // 10
    timed = interleaved(
        {
            "yaml": lambda: [config_data(text) for _ in range(loads)],
            "load_config": lambda: [load_config(BUNDLED_CONFIG, environ={}) for _ in range(loads)],
            **{
                name: (lambda call=call: [call(data) for _ in range(reps)])
                for name, call in validate_with.items()
            },
        },
        5 if quick else 15,
    )
    print(
        f"\n   The bundled config.yaml: digest's whole load_config"
        f" {ms(timed['load_config'] / loads)}, of which reading the YAML"
        f" {ms(timed['yaml'] / loads)}. Validating what was read"
        " (each runs digest's own checks of addresses, URLs and zones too):"
    )
    table(
        [("", "validate", "same values as digest")]
        + [
            (name, us(timed[name] / reps), "; ".join(same[name][:3]) or "yes")
            for name in validate_with
        ],
        "   ",
    )
    accepted_values(validate_with, data)
    config_errors(validate_with, text)


def _all_sections() -> list[type[Section]]:
    found: list[type[Section]] = []
    pending: list[type[Section]] = [Config]
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            for key in keys_of(cls):
                for arg in (key.annotation, *get_args(key.annotation)):
                    inner = get_args(arg) if get_origin(arg) is list else (arg,)
                    for candidate in inner:
                        if isinstance(candidate, type) and issubclass(candidate, Section):
                            pending.append(candidate)
    return found


# Values digest accepts today (digest.config.fields' docstring lists them): (section, key, as
# written).
WRITTEN_TODAY: tuple[tuple[str, str, Any], ...] = (
    ("digest", "max_posts_per_section", " 30 "),
    ("digest", "max_posts_per_section", "+30"),
    ("digest", "max_posts_per_section", "1_000"),
    ("digest", "max_posts_per_section", "30.0"),
    ("digest", "max_posts_per_section", 30.0),
    ("digest", "skip_if_empty", "yes"),
    ("digest", "skip_if_empty", "off"),
    ("digest", "skip_if_empty", "Y"),
    ("digest", "skip_if_empty", 1),
    ("smtp", "port", "587"),
    ("smtp", "timeout", ".5"),
    ("smtp", "timeout", "1e3"),
    ("schedule", "grace", "90m"),
    ("schedule", "grace", 600),
)


def accepted_values(validate_with: dict[str, Callable[[Any], Any]], data: dict[str, Any]) -> None:
    refused: dict[str, list[str]] = {name: [] for name in validate_with}
    for section, key, written in WRITTEN_TODAY:
        changed = {**data, section: {**data[section], key: written}}
        expected = getattr(getattr(validate(Config, changed), section), key)
        for name, call in validate_with.items():
            try:
                got = getattr(getattr(call(changed), section), key)
            except ValueError:  # each library's error class is a ValueError
                got = "refused"
            if got != expected or type(got) is not type(expected):
                refused[name].append(f"{section}.{key}: {written!r}")
    print(
        f"\n   Of {len(WRITTEN_TODAY)} values that load today (the rules in digest.config.fields),"
        " each library accepts, to the same value and type:"
    )
    for name, values in refused.items():
        count = len(WRITTEN_TODAY) - len(values)
        shown = f"; refuses or changes {', '.join(values)}" if values else ""
        print(f"   {name:9} {count}/{len(WRITTEN_TODAY)}{shown}")


def attempt(name: str, call: Callable[[Any], Any], text: str) -> Exception | None:
    """The error a config text gets: digest's from the whole load_config of a file named
    config.yaml, a library's from validating what digest's loader read."""
    if name != "digest":
        try:
            call(config_data(text))
        except ValueError as error:  # both libraries' errors are ValueErrors
            return error
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, environ={})
        except ConfigError as error:
            return ConfigError(str(error).replace(str(path), "config.yaml"))
    return None


def config_errors(validate_with: dict[str, Callable[[Any], Any]], text: str) -> None:
    print("\n   Errors for broken configs (digest's from its whole load_config; the libraries'")
    print("   for the same YAML as digest's loader read it):")
    for broken in BROKEN:
        changed = broken.edit(text)
        line = changed.splitlines().index(broken.line_of) + 1
        want = dotted(broken.path)
        print(f"\n   {broken.what} (line {line}):")
        rows = [("", "names the line", "names the key", "says what to write", "shows the value")]
        for name, call in validate_with.items():
            error = attempt(name, call, changed)
            if error is None:
                print(f"     {name}: accepted it")
                continue
            message = error_text(name, error)
            for number, part in enumerate(message.splitlines()):
                print(f"     {name + ':' if number == 0 else '':10}{part}")
            paths = reported_paths(name, error)
            rows.append(
                (
                    name,
                    "yes" if f":{line}:" in message or f"line {line}" in message else "no",
                    "yes" if want in paths else f"no ({', '.join(paths)})",
                    "yes" if any(hint in message for hint in broken.hint) else "no",
                    "yes" if "8412675309" in message or "'lots'" in message else "no",
                )
            )
        print()
        table(rows, "     ")
    combined = text
    for broken in BROKEN[:3]:
        combined = broken.edit(combined)
    counts = []
    for name, call in validate_with.items():
        error = attempt(name, call, combined)
        counts.append(f"{name} {len(reported_paths(name, error)) if error else 0}")
    print(
        f"\n   The first three mistakes in one file; how many one run reports: {', '.join(counts)}"
    )


# -- 2. cron parsing: digest.core.cron (+ digest.run.slots) against cronsim
# ----------------------------


@dataclasses.dataclass(frozen=True)
class CronCase:
    """A case from tests/test_schedule.py or tests/test_slots.py: the expected slots."""

    expression: str
    zone: str
    after: datetime
    expected: tuple[str, ...]
    shown: str = "iso"  # "iso", "%a" (weekday names) or "date"


def _local(*parts: int, zone: ZoneInfo = LONDON, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=zone, fold=fold)  # type: ignore[misc]


SUNDAY = datetime(2027, 3, 21, tzinfo=UTC)
WEEK = ("Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue")
CRON_CASES = (
    CronCase("0 8 * * 1", "UTC", SUNDAY, ("Mon", "Mon", "Mon"), "%a"),
    CronCase("0 8 * * 0", "UTC", SUNDAY, ("Sun", "Sun"), "%a"),
    CronCase("0 8 * * 7", "UTC", SUNDAY, ("Sun", "Sun"), "%a"),
    CronCase("0 8 * * sun", "UTC", SUNDAY, ("Sun", "Sun"), "%a"),
    CronCase("0 8 * * SUN", "UTC", SUNDAY, ("Sun", "Sun"), "%a"),
    CronCase("0 8 * * 1-5", "UTC", SUNDAY, WEEK, "%a"),
    CronCase("0 8 * * mon-fri", "UTC", SUNDAY, WEEK, "%a"),
    CronCase("0 8 * * */2", "UTC", SUNDAY, ("Sun", "Tue", "Thu", "Sat", "Sun", "Tue", "Thu"), "%a"),
    CronCase(
        "0 8 * * 1-7/3", "UTC", SUNDAY, ("Sun", "Mon", "Thu", "Sun", "Mon", "Thu", "Sun"), "%a"
    ),
    CronCase("0 8 * * 5-7", "UTC", SUNDAY, ("Sun", "Fri", "Sat", "Sun", "Fri", "Sat", "Sun"), "%a"),
    CronCase(
        "0 8 * * fri-sun", "UTC", SUNDAY, ("Sun", "Fri", "Sat", "Sun", "Fri", "Sat", "Sun"), "%a"
    ),
    CronCase(
        "0 8 * * sat,2", "UTC", SUNDAY, ("Tue", "Sat", "Tue", "Sat", "Tue", "Sat", "Tue"), "%a"
    ),
    CronCase("@weekly", "UTC", SUNDAY, ("Sun", "Sun"), "%a"),
    CronCase(
        "0 8 1 * 1",
        "UTC",
        datetime(2027, 3, 28, tzinfo=UTC),
        ("2027-03-29", "2027-04-01", "2027-04-05"),
        "date",
    ),
    CronCase(
        "0 8 * * mon",
        "Europe/London",
        datetime(2027, 3, 20, tzinfo=UTC),
        ("2027-03-22T08:00:00+00:00", "2027-03-29T08:00:00+01:00", "2027-04-05T08:00:00+01:00"),
    ),
    CronCase(
        "0 8 * * *",
        "Europe/London",
        _local(2027, 3, 27, 0, 0),
        ("2027-03-27T08:00:00+00:00", "2027-03-28T08:00:00+01:00", "2027-03-29T08:00:00+01:00"),
    ),
    CronCase(
        "0 8 * * *",
        "Europe/London",
        _local(2027, 10, 30, 0, 0),
        ("2027-10-30T08:00:00+01:00", "2027-10-31T08:00:00+00:00", "2027-11-01T08:00:00+00:00"),
    ),
    CronCase(
        "30 1 * * *",
        "Europe/London",
        _local(2027, 3, 27, 2, 0),
        ("2027-03-28T02:00:00+01:00", "2027-03-29T01:30:00+01:00", "2027-03-30T01:30:00+01:00"),
    ),
    CronCase(
        "0,20,40 * * * *",
        "Europe/London",
        _local(2027, 3, 28, 0, 30),
        (
            "2027-03-28T00:40:00+00:00",
            "2027-03-28T02:00:00+01:00",
            "2027-03-28T02:20:00+01:00",
            "2027-03-28T02:40:00+01:00",
        ),
    ),
    CronCase(
        "30 1 * * *",
        "Europe/London",
        _local(2027, 10, 30, 2, 0),
        ("2027-10-31T01:30:00+01:00", "2027-11-01T01:30:00+00:00", "2027-11-02T01:30:00+00:00"),
    ),
    CronCase(
        "30 1 * * *",
        "Europe/London",
        _local(2027, 10, 31, 1, 10, fold=1),
        ("2027-11-01T01:30:00+00:00",),
    ),
    CronCase(
        "30 2 * * *",
        "America/New_York",
        datetime(2027, 3, 13, 12, tzinfo=UTC),
        ("2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"),
    ),
    CronCase(
        "30 1 * * 0",
        "America/New_York",
        datetime(2027, 11, 6, tzinfo=UTC),
        ("2027-11-07T01:30:00-04:00", "2027-11-14T01:30:00-05:00"),
    ),
    CronCase(
        "0 8 * * mon",
        "America/New_York",
        datetime(2027, 3, 1, tzinfo=UTC),
        ("2027-03-01T08:00:00-05:00", "2027-03-08T08:00:00-05:00", "2027-03-15T08:00:00-04:00"),
    ),
    CronCase(
        "0 8 * * mon",
        "Europe/London",
        _local(2027, 3, 29, 8, 0),
        ("2027-04-05T08:00:00+01:00", "2027-04-12T08:00:00+01:00"),
    ),
    CronCase("0 8 29 2 *", "UTC", datetime(2031, 1, 1, tzinfo=UTC), ("2032-02-29T08:00:00+00:00",)),
    CronCase(
        "0 8 * * mon",
        "Europe/London",
        _local(2027, 10, 25, 0, 0),
        ("2027-10-25T08:00:00+01:00", "2027-11-01T08:00:00+00:00", "2027-11-08T08:00:00+00:00"),
    ),
    CronCase(
        "30 1 * * *",
        "Europe/London",
        datetime(2027, 3, 28, tzinfo=UTC),
        ("2027-03-28T02:00:00+01:00", "2027-03-29T01:30:00+01:00"),
    ),
)

# Beyond the tests: the hour repeated in autumn, for a schedule finer than an hour.
CRON_EXTRA = (CronCase("0,20,40 * * * *", "Europe/London", _local(2027, 10, 31, 0, 30), ()),)

# The bad expressions tests/test_schedule.py checks, then ones cronsim reads and digest refuses.
BAD_CRON = (
    "0 8 * *",
    "0 8 * * 8",
    "61 8 * * 1",
    "0 8 * * fri-mon",
    "0 8 * * funday",
    "0 8 30 2 *",
    "*/0 8 * * *",
    "@reboot",
    "5/10 8 * * *",
    "0 8 L * *",
    "0 8 * * 5L",
    "0 8 * * mon#2",
    "0 0 8 * * 1",
)


def digest_slots(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    from digest.config.schema import ScheduleConfig
    from digest.run.slots import next_slots

    return next_slots(ScheduleConfig(cron=expression, timezone=zone), after, count)


def cronsim_slots(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    from cronsim import CronSim

    return list(islice(CronSim(expression, after.astimezone(ZoneInfo(zone))), count))


def _shown(slots: list[datetime], how: str) -> tuple[str, ...]:
    if how == "%a":
        return tuple(slot.strftime("%a") for slot in slots)
    if how == "date":
        return tuple(slot.date().isoformat() for slot in slots)
    return tuple(slot.isoformat() for slot in slots)


def cron_comparison(quick: bool) -> None:
    from cronsim import CronSimError

    print(f"\n2. Cron: digest.core.cron and digest.run.slots against cronsim {version('cronsim')}")
    runs = 5 if quick else 20
    medians = import_medians(
        {
            "digest.core.cron": (ALREADY_LOADED, ["import digest.core.cron"]),
            "cronsim": (ALREADY_LOADED, ["import cronsim"]),
            "apscheduler CronTrigger": (
                ALREADY_LOADED,
                ["from apscheduler.triggers.cron import CronTrigger"],
            ),
        },
        runs,
    )
    print(f"\n   Import, median of {runs} fresh interpreters:")
    table([("", "import")] + [(name, ms(seconds)) for name, (seconds,) in medians.items()], "   ")
    print(
        "   (digest.run.slots, which works out the fire times, imports digest.core.cron"
        " and CronTrigger)"
    )

    print(f"\n   The {len(CRON_CASES)} cases the tests assert, through each:")
    disagreements: list[str] = []
    digest_right = 0
    for case in CRON_CASES:
        count = len(case.expected)
        mine = _shown(digest_slots(case.expression, case.zone, case.after, count), case.shown)
        digest_right += mine == case.expected
        try:
            theirs = _shown(
                cronsim_slots(case.expression, case.zone, case.after, count), case.shown
            )
        except CronSimError as error:
            theirs = (f"error: {error}",)
        if theirs != case.expected:
            disagreements.append(
                f"{case.expression!r} in {case.zone} after {case.after.isoformat()}"
                f" (fold={case.after.fold}):\n       tests expect {', '.join(case.expected)}"
                f"\n       cronsim gives {', '.join(theirs)}"
            )
    agreed = len(CRON_CASES) - len(disagreements)
    print(
        f"   digest agrees with the tests in {digest_right}, cronsim in {agreed}; cronsim differs:"
    )
    for line in disagreements:
        print(f"     {line}")
    for case in CRON_EXTRA:
        mine = _shown(digest_slots(case.expression, case.zone, case.after, 7), case.shown)
        theirs = _shown(cronsim_slots(case.expression, case.zone, case.after, 7), case.shown)
        if mine != theirs:
            print(
                f"   Not in the tests: {case.expression!r} in {case.zone} after"
                f" {case.after.isoformat()}:\n       digest  {', '.join(mine)}"
                f"\n       cronsim {', '.join(theirs)}"
            )

    start = datetime(2027, 1, 1, tzinfo=UTC)
    expressions = ("0 8 * * mon", "*/15 9-17 * * 1-5", "0 8 1 * 1")
    calls: dict[str, Callable[[], object]] = {}
    for expression in expressions:
        calls[f"digest {expression}"] = lambda e=expression: digest_slots(
            e, "Europe/London", start, 1000
        )
        calls[f"cronsim {expression}"] = lambda e=expression: cronsim_slots(
            e, "Europe/London", start, 1000
        )
    timed = interleaved(calls, 3 if quick else 9)
    print("\n   The next 1,000 fire times in Europe/London from 2027-01-01 (interleaved, median):")
    rows = [("", "digest (next_slots)", "cronsim", "same times")]
    for expression in expressions:
        same = [
            s.astimezone(UTC) for s in digest_slots(expression, "Europe/London", start, 1000)
        ] == [s.astimezone(UTC) for s in cronsim_slots(expression, "Europe/London", start, 1000)]
        rows.append(
            (
                expression,
                ms(timed[f"digest {expression}"]),
                ms(timed[f"cronsim {expression}"]),
                "yes" if same else "no",
            )
        )
    table(rows, "   ")

    print("\n   Bad expressions (the first eight are the tests'):")
    rows = [("expression", "digest", "cronsim")]
    for expression in BAD_CRON:
        try:
            parse_cron(expression)
            mine = "accepted"
        except ValueError as error:
            mine = str(error)
        try:
            slots = cronsim_slots(expression, "UTC", SUNDAY, 1)
            theirs = f"accepted: next {slots[0].isoformat()}"
        except CronSimError as error:
            theirs = str(error)
        rows.append((expression, mine, theirs))
    table(rows, "   ")


# -- 3. purpose tokens: digest.core.tokens against itsdangerous and Fernet -------------------------


LIFETIME = timedelta(days=7)


@dataclasses.dataclass(frozen=True)
class TokenKind:
    """One way of making and checking a purpose token; `check` gives the address or None."""

    name: str
    make: Callable[[str, str, datetime], str]  # purpose, address, now
    check: Callable[[str, str, datetime], str | None]  # purpose, token, now


def token_kinds() -> list[TokenKind]:
    """digest's tokens, itsdangerous's (its default HMAC-SHA1, and SHA-256) and Fernet's, each
    with `now` passed in (itsdangerous through its signer's clock, Fernet's *_at_time)."""
    from functools import lru_cache

    from cryptography.fernet import Fernet, InvalidToken
    from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

    def digest_make(purpose: str, address: str, now: datetime) -> str:
        return tokens.make_purpose_token(SECRET, purpose, address, now + LIFETIME)

    def digest_check(purpose: str, token: str, now: datetime) -> str | None:
        return tokens.check_purpose_token(SECRET, purpose, token, now).address

    @lru_cache
    def serializer(purpose: str, at: int, method: str) -> URLSafeTimedSerializer:
        class Clock(TimestampSigner):
            def get_timestamp(self) -> int:
                return at

        kwargs = {"digest_method": getattr(hashlib, method)}
        return URLSafeTimedSerializer(SECRET, salt=purpose, signer=Clock, signer_kwargs=kwargs)

    def itsdangerous(method: str) -> tuple[Callable[..., str], Callable[..., str | None]]:
        def make(purpose: str, address: str, now: datetime) -> str:
            token: str = serializer(purpose, int(now.timestamp()), method).dumps(address)
            return token

        def check(purpose: str, token: str, now: datetime) -> str | None:
            try:
                found: str = serializer(purpose, int(now.timestamp()), method).loads(
                    token, max_age=int(LIFETIME.total_seconds())
                )
            except BadData:
                return None
            return found

        return make, check

    fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(SECRET.encode()).digest()))

    def fernet_make(purpose: str, address: str, now: datetime) -> str:
        plain_text = f"{purpose}\0{address}".encode()
        return fernet.encrypt_at_time(plain_text, int(now.timestamp())).decode("ascii")

    def fernet_check(purpose: str, token: str, now: datetime) -> str | None:
        ttl = int(LIFETIME.total_seconds())
        try:
            plain_text = fernet.decrypt_at_time(token, ttl, int(now.timestamp()))
        except InvalidToken:
            return None
        found_purpose, _, address = plain_text.decode("utf-8").partition("\0")
        return address if found_purpose == purpose else None

    return [
        TokenKind("digest.core.tokens (AES-SIV)", digest_make, digest_check),
        TokenKind("itsdangerous (its default, HMAC-SHA1)", *itsdangerous("sha1")),
        TokenKind("itsdangerous (HMAC-SHA256)", *itsdangerous("sha256")),
        TokenKind("Fernet (AES-128-CBC + HMAC-SHA256)", fernet_make, fernet_check),
    ]


def token_comparison(quick: bool) -> None:
    print(
        f"\n3. Purpose tokens: digest.core.tokens against itsdangerous {version('itsdangerous')}"
        f" and cryptography {version('cryptography')}'s Fernet"
    )
    runs = 5 if quick else 20
    medians = import_medians(
        {
            "digest.core.tokens": (ALREADY_LOADED, ["import digest.core.tokens"]),
            "itsdangerous": (
                ALREADY_LOADED,
                ["from itsdangerous import URLSafeTimedSerializer"],
            ),
            "Fernet": (ALREADY_LOADED, ["from cryptography.fernet import Fernet"]),
        },
        runs,
    )
    imports = [medians["digest.core.tokens"], medians["itsdangerous"], medians["itsdangerous"]]
    imports.append(medians["Fernet"])
    kinds = token_kinds()
    now = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    count = 10_000 if quick else 100_000
    rounds = 5
    addresses = [f"reader{n}@example.org" for n in range(count)]
    per_token: dict[str, list[float]] = {kind.name: [] for kind in kinds}
    for chunk in (addresses[n::rounds] for n in range(rounds)):
        for kind in kinds:
            make, check = kind.make, kind.check
            started = time.perf_counter()
            for address in chunk:
                if check("confirm", make("confirm", address, now), now) != address:
                    raise SystemExit(f"{kind.name}: a token did not check for {address}")
            per_token[kind.name].append((time.perf_counter() - started) / len(chunk))
    print(
        f"\n   Make and check one token, {count:,} addresses in {rounds} interleaved rounds"
        f" (median round); import median of {runs} interpreters:"
    )
    example = "reader@example.org"
    rows = [("", "make + check", "import", "length", "other purpose", "late", "address readable")]
    made: dict[str, str] = {}
    for kind, (imported,) in zip(kinds, imports, strict=True):
        token = made[kind.name] = kind.make("confirm", example, now)
        other = kind.check("preferences", token, now)
        late = kind.check("confirm", token, now + LIFETIME + timedelta(seconds=1))
        rows.append(
            (
                kind.name,
                us(statistics.median(per_token[kind.name])),
                ms(imported),
                str(len(token)),
                "refused" if other is None else "ACCEPTED",
                "refused" if late is None else "ACCEPTED",
                readable(token, example),
            )
        )
    table(rows, "   ")
    # 254 characters, the longest address SMTP carries; hex, as little to compress as a real
    # address (itsdangerous zlib-compresses a payload when that makes it shorter).
    labels = [hashlib.sha256(bytes([n])).hexdigest() for n in range(4)]
    longest = f"{labels[0]}@{labels[1][:63]}.{labels[2][:63]}.{labels[3][:61]}"
    print("   For a 254-character address (itsdangerous zlib-compresses a payload that shrinks):")
    for kind in kinds:
        token = kind.make("confirm", longest, now)
        print(
            f"     {kind.name}: {len(token)} characters, readable: {readable(token, longest)[:3]}"
        )
    print(f"   e.g. {made[kinds[2].name]}\n        {made[kinds[0].name]}")


def readable(token: str, address: str) -> str:
    """Whether any dot-separated part of a token decodes (URL-safe base64, then zlib if it is
    compressed) to text holding the address."""
    for part in token.split("."):
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            continue
        with contextlib.suppress(zlib.error):
            decoded = zlib.decompress(decoded)
        if address.encode() in decoded:
            try:
                shown = json.loads(decoded)
            except ValueError:
                shown = decoded.decode("utf-8", "replace")
            return f"yes: {part!r} is {shown!r}"
    return "no"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs: checks the script")
    options = parser.parse_args()
    print(
        f"Hand-written parts beside libraries, on {cpu_model()} ({len(_cpus())} cores),"
        f" Python {platform.python_version()}"
    )
    config_comparison(options.quick)
    cron_comparison(options.quick)
    token_comparison(options.quick)


def _cpus() -> list[int]:
    import os

    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


if __name__ == "__main__":
    main()
