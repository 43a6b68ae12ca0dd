"""The README's configuration reference is generated from Settings and kept current."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from common.config import Settings
from eventguard.config_reference import END, START, render, replace_between_markers

README = Path(__file__).resolve().parents[2] / "README.md"


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += _models(candidate)
    return found


def test_readme_reference_is_current() -> None:
    """README.md holds exactly what the generator renders (run it with --write when this fails)."""
    text = README.read_text(encoding="utf-8")
    assert replace_between_markers(text, render()) == text


def test_every_setting_has_a_description() -> None:
    """Every field of every section (and of model entries) says what it does."""
    missing = [
        f"{model.__name__}.{name}"
        for model in _models(Settings)
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_reference_names_variables_types_defaults() -> None:
    """Rows carry the environment variable, the type with bounds and the default."""
    text = render()
    assert "| `EVENTGUARD_RUNTIME__PREFETCH` | int (>= 1, <= 10,000) | `32` |" in text
    assert "| `EVENTGUARD_AI_FALLBACK__RETRY_AFTER_CAP_S` | float (>= 0) | `2.0` |" in text
    assert "| `endpoint` | str | required | Base URL ending in `/v1`" in text
    assert text.count("| variable |") == 1 + sum(
        1 for f in Settings.model_fields.values() if isinstance(f.annotation, type)
        and issubclass(f.annotation, BaseModel)
    )


def test_markers_replace_only_what_lies_between() -> None:
    """Text outside the markers is kept byte for byte."""
    text = f"before\n{START}\nold\n{END}\nafter\n"
    assert replace_between_markers(text, "new\n") == f"before\n{START}\nnew\n{END}\nafter\n"
