"""`digest init`: a commented config covering every key, a project `digest check` accepts as is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from digest.cli.reference import config_keys
from digest.cli.scaffold import BUNDLED_SAMPLES, OVERRIDES, config_text, init_project
from digest.config.schema import DigestOptions, FetchConfig, SmtpConfig, ThemeConfig, parse_config
from digest.render.loader import BUNDLED_TEMPLATES, readme_text

ENVIRONMENT = {"SMTP_PASSWORD": "password", "DIGEST_SECRET": "secret"}
OPTIONAL_LINE = re.compile(r"^(\s*)# ([a-z_]+):( .*)?$")


def parse(text: str, base: Path) -> object:
    return parse_config(text, "config.yaml", base, ENVIRONMENT)


def test_generated_config_names_every_key_with_an_explanation(tmp_path: Path) -> None:
    text = config_text()
    lines = text.splitlines()
    for key in config_keys():
        start = 0
        for part in key.path.split("."):
            pattern = re.compile(rf"^\s*(- )?(# )?{part.removesuffix('[]')}:( |$)")
            found = [n for n in range(start, len(lines)) if pattern.match(lines[n])]
            assert found, f"{key.path} is missing from the generated config.yaml"
            start = found[0]
        comments = " ".join(line.strip() for line in lines[start - 5 : start] if line.strip())
        assert key.description in comments, f"{key.path} has no explanation above it"
    assert max(len(line) for line in lines) <= 100


def test_generated_config_parses_and_its_values_are_the_defaults(tmp_path: Path) -> None:
    config = parse(config_text(), tmp_path)
    assert config.theme == ThemeConfig()  # type: ignore[attr-defined]
    assert config.smtp == SmtpConfig()  # type: ignore[attr-defined]
    assert config.fetch == FetchConfig()  # type: ignore[attr-defined]
    lookback, _ = OVERRIDES["digest.lookback_days"]
    assert config.digest == DigestOptions(lookback_days=lookback)  # type: ignore[attr-defined]
    assert config.schedule is None  # type: ignore[attr-defined]
    assert [f.url for f in config.feeds] == ["samples/blog.xml", "samples/news.atom"]  # type: ignore[attr-defined]


def switched_off_sections(lines: list[str]) -> set[int]:
    """Line numbers inside a commented-out section such as `# schedule:`."""
    inside: set[int] = set()
    for number, line in enumerate(lines):
        match = OPTIONAL_LINE.match(line)
        if not match or match.group(3) is not None:
            continue
        indent = len(match.group(1))
        for later in range(number + 1, len(lines)):
            if not lines[later].strip() or len(lines[later]) - len(lines[later].lstrip()) <= indent:
                break
            inside.add(later)
    return inside


def test_each_commented_example_is_valid_when_switched_on(tmp_path: Path) -> None:
    lines = config_text().splitlines()
    skip = switched_off_sections(lines)
    switched = 0
    for number, line in enumerate(lines):
        match = OPTIONAL_LINE.match(line)
        if not match or match.group(3) is None or number in skip:
            continue
        edited = [*lines]
        edited[number] = match.group(1) + line.strip()[2:]
        parse("\n".join(edited), tmp_path)
        switched += 1
    assert switched >= 15


@pytest.mark.parametrize("section", ["dkim", "schedule"])
def test_switched_off_sections_are_valid_when_switched_on(section: str, tmp_path: Path) -> None:
    lines = config_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip() == f"# {section}:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    edited = [*lines]
    edited[start] = " " * indent + f"{section}:"
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        match = OPTIONAL_LINE.match(line)
        if match and match.group(2) != "cron":
            edited[number] = match.group(1) + line.strip()[2:]
    config = parse("\n".join(edited), tmp_path)
    assert config is not None


def test_init_writes_the_project_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "newsletter"
    created = init_project(target)
    assert (target / "config.yaml").read_text() == config_text()
    rows = (target / "subscribers.csv").read_text().splitlines()
    assert rows[0] == "email,name" and len(rows) == 2
    assert [p.name for p in (target / "templates").iterdir()] == ["README.txt"]
    assert (target / "templates" / "README.txt").read_text() == readme_text()
    assert (target / "samples" / "blog.xml").is_file()
    assert len(created) == 3 + len(list(BUNDLED_SAMPLES.iterdir()))
    config_before = (target / "config.yaml").read_text()
    (target / "config.yaml").write_text(config_before + "# my edit\n")
    from digest.cli.main import main

    result = CliRunner().invoke(main, ["init", str(target)])
    assert result.exit_code == 2
    assert "already exist" in result.output and "config.yaml" in result.output
    assert (target / "config.yaml").read_text().endswith("# my edit\n")


def test_init_with_templates_copies_every_bundled_template(tmp_path: Path) -> None:
    target = tmp_path / "newsletter"
    created = init_project(target, copy_templates=True)
    templates = sorted(p.name for p in BUNDLED_TEMPLATES.iterdir() if p.is_file())
    assert "email.html" in templates and "post.html" in templates
    assert sorted(p.name for p in (target / "templates").iterdir()) == sorted(
        [*templates, "README.txt"]
    )
    for name in templates:
        assert (target / "templates" / name).read_bytes() == (BUNDLED_TEMPLATES / name).read_bytes()
    assert len(created) == 3 + len(templates) + len(list(BUNDLED_SAMPLES.iterdir()))


def test_init_into_a_file_is_a_usage_error(tmp_path: Path) -> None:
    from digest.cli.main import main

    (tmp_path / "taken").write_text("x")
    result = CliRunner().invoke(main, ["init", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert "is a file" in result.output


def test_init_then_check_passes(tmp_path: Path) -> None:
    from digest.cli.main import main

    target = tmp_path / "fresh"
    runner = CliRunner()
    made = runner.invoke(main, ["init", str(target)])
    assert made.exit_code == 0, made.output
    checked = runner.invoke(main, ["--config", str(target / "config.yaml"), "check"])
    assert checked.exit_code == 0, checked.output
    assert "OK: 2 feeds, 1 subscriber," in checked.output
    assert not (target / "digest.sqlite3").exists()


def test_init_then_preview_shows_the_sample_posts(tmp_path: Path) -> None:
    from digest.cli.main import main

    target = tmp_path / "fresh"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(target)]).exit_code == 0
    result = runner.invoke(main, ["--config", str(target / "config.yaml"), "preview", "--text"])
    assert result.exit_code == 0, result.output
    assert "My Newsletter" in result.output
    assert "From the blog" in result.output and "Latest news" in result.output
    assert yaml.safe_load((target / "config.yaml").read_text())["newsletter"]["title"]
