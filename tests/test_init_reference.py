"""docs/reference.md is generated from the config models and render's variables: never stale."""

from __future__ import annotations

from pathlib import Path

from digest.cli.reference import config_keys, generate, template_variables

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


def test_docs_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == generate(), (
        "docs/reference.md is stale: run `python -m digest.cli.reference > docs/reference.md`"
    )


def test_reference_lists_every_config_key_and_template_variable() -> None:
    text = generate()
    for key in config_keys():
        assert f"| `{key.path}` |" in text
        assert key.description, f"{key.path} has no description in digest/config/schema.py"
    variables = template_variables()
    assert variables, "render publishes no table of template variables"
    for name, description in variables:
        assert f"| `{name}` |" in text
        assert description
