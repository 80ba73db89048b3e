"""`digest init`: a ready-to-edit newsletter folder whose config.yaml documents every key.

The templates/ folder starts empty but for a README.txt, so the newsletter keeps getting the
bundled templates' improvements; `digest init --templates` copies them all for editors who want
to own every file.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from digest.config.fields import Section
from digest.config.keys import config_keys
from digest.config.schema import Config
from digest.core.errors import ConfigError
from digest.render.loader import BUNDLED_TEMPLATES, readme_text

BUNDLED_SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TEMPLATES_README = "README.txt"

SAMPLE_FEEDS = (
    ("From the blog", "samples/blog.xml"),
    ("Latest news", "samples/news.atom"),
)

WIDTH = 100
SUBSCRIBERS_CSV = "email,name\nyou@example.org,Your Name\n"

# Values written for keys that have no default (or whose default is "unset").
EXAMPLES: dict[str, Any] = {
    "newsletter.title": "My Newsletter",
    "newsletter.from": "My Organisation <newsletter@example.org>",
    "newsletter.reply_to": "My Organisation <hello@example.org>",
    "newsletter.subject": "{title}: {count} new posts, {date}",
    "newsletter.intro": "The latest **news and events** from My Organisation.",
    "newsletter.unsubscribe_url": "https://news.example.org/unsubscribe?token={token}",
    "newsletter.unsubscribe_mailto": "unsubscribe@example.org",
    "newsletter.archive_url": "https://news.example.org",
    "newsletter.logo_url": "https://example.org/logo.png",
    "newsletter.footer": "You are receiving this because you subscribed at example.org.",
    "newsletter.address": "My Organisation, 1 Example Street, London EC1A 1AA",
    "feeds[].section": "News",
    "feeds[].max_posts": 5,
    "feeds[].include": ["climate", "energy"],
    "feeds[].exclude": ["^Sponsored"],
    "smtp.username": "newsletter@example.org",
    "smtp.password": "${SMTP_PASSWORD}",
    "smtp.max_per_second": 10,
    "smtp.dkim.selector": "digest",
    "smtp.dkim.domain": "example.org",
    "smtp.dkim.key_file": "dkim-private.pem",
    "secret": "${DIGEST_SECRET}",
    "schedule.day": "monday",
    "schedule.time": "08:00",
    "schedule.cron": "0 8 * * 1",
    "schedule.timezone": "Europe/London",
    "archive.out_dir": "public",
    "archive.subscribe_url": "https://news.example.org/subscribe",
    "schedule.grace": "6h",
    "metrics.listen": "127.0.0.1:9464",
}

# Keys written with something other than their default, and why.
OVERRIDES: dict[str, tuple[Any, str]] = {
    "digest.lookback_days": (
        3650,
        "The bundled sample feeds are old: set this back to 14 (the default) once your own"
        " feeds are in.",
    ),
}

# Optional keys left commented out although they have an example, with why.
NOTES: dict[str, str] = {
    "newsletter.unsubscribe_url": "Point it at `digest serve` for one-click unsubscribe;"
    " Gmail and Yahoo require that for bulk mail.",
    "schedule.cron": "Use either cron or day + time.",
}

HEADER = """\
# Your newsletter. Every key is listed with its default and a one-line explanation;
# lines starting with "# key:" are optional settings, switched off: remove the "# " to use one.
# Check it with `digest check`, see the next issue live with `digest serve` (it prints where),
# send yourself a copy with `digest send --to you@example.org`.
# Any value may read the environment: ${SMTP_PASSWORD} or ${SMTP_HOST:-localhost}.
"""


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _comment(text: str, indent: str, lines: list[str]) -> None:
    for line in textwrap.wrap(text, width=WIDTH - len(indent) - 2):
        lines.append(f"{indent}# {line}")


def _emit(
    model: type[Section], prefix: str, indent: str, commented: bool, lines: list[str]
) -> None:
    keys = [k for k in config_keys(model, prefix) if "." not in k.path.removeprefix(prefix)]
    for key in keys:
        name = key.path.removeprefix(prefix).removesuffix("[]")
        if not indent:
            lines.append("")
        _comment(key.description, indent, lines)
        if key.path in NOTES:
            _comment(NOTES[key.path], indent, lines)
        if key.path == "feeds[]":
            _emit_feeds(indent, lines)
            continue
        off = commented or (key.default is None and not key.required)
        mark = "# " if off else ""
        if key.model is not None:
            lines.append(f"{indent}{mark}{name}:")
            _emit(key.model, f"{key.path}.", indent + "  ", off, lines)
        elif key.path in OVERRIDES:
            value, why = OVERRIDES[key.path]
            _comment(why, indent, lines)
            lines.append(f"{indent}{mark}{name}: {_scalar(value)}")
        elif key.required or key.default is None:
            value = EXAMPLES.get(key.path)
            shown = "" if value is None else f" {_scalar(value)}"
            lines.append(f"{indent}{mark}{name}:{shown}")
        else:
            lines.append(f"{indent}{mark}{name}: {_scalar(key.default)}")


def _emit_feeds(indent: str, lines: list[str]) -> None:
    lines.append(f"{indent}feeds:")
    feed_keys = {
        k.path.removeprefix("feeds[]."): k
        for k in config_keys()
        if ".".join(k.path.split(".")[:1]) == "feeds[]" and k.path != "feeds[]"
    }
    for number, (name, url) in enumerate(SAMPLE_FEEDS):
        if number == 0:
            lines.append(f"{indent}  # {feed_keys['name'].description}")
        lines.append(f"{indent}  - name: {_scalar(name)}")
        if number == 0:
            lines.append(f"{indent}    # {feed_keys['url'].description}")
        lines.append(f"{indent}    url: {_scalar(url)}")
        if number:
            continue
        for field, key in feed_keys.items():
            if field in ("name", "url"):
                continue
            example = EXAMPLES.get(key.path, key.default)
            lines.append(f"{indent}    # {key.description}")
            lines.append(f"{indent}    # {field}: {_scalar(example)}")


def config_text() -> str:
    """The commented config.yaml `digest init` writes, generated from the config models."""
    lines: list[str] = [HEADER.rstrip("\n")]
    _emit(Config, "", "", False, lines)
    return "\n".join(lines) + "\n"


def _bundled(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith((".", "__")) for part in path.parts)
    )


def init_project(directory: Path, *, copy_templates: bool = False) -> list[Path]:
    """Write config.yaml, subscribers.csv, samples/ and templates/README.txt (with copy_templates,
    every bundled template too); never overwrite a file."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(
            f"{directory}: exists and is not a folder; choose a folder for the newsletter"
        )
    files: dict[Path, bytes] = {
        directory / "config.yaml": config_text().encode("utf-8"),
        directory / "subscribers.csv": SUBSCRIBERS_CSV.encode("utf-8"),
        directory / "templates" / TEMPLATES_README: readme_text().encode("utf-8"),
    }
    sources = [(BUNDLED_SAMPLES, "samples")]
    if copy_templates:
        sources.insert(0, (BUNDLED_TEMPLATES, "templates"))
    for source_root, target in sources:
        for path in _bundled(source_root):
            files[directory / target / path.relative_to(source_root)] = path.read_bytes()
    existing = [path for path in files if path.exists()]
    if existing:
        names = ", ".join(str(path) for path in existing[:5])
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        raise ConfigError(
            f"{names}{more} already exist; digest init never overwrites files."
            " Choose a new folder, e.g. `digest init my-newsletter`."
        )
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(files)
