"""The README's tables of GATEWAY_* variables against the settings models they document."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from gateway.live.settings import LiveSettings
from gateway.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| variable | default | meaning |"
# Env prefixes, longest first: GATEWAY_LIVE_JITTER_MS is a live setting, not a `live_…` one.
MODELS: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("GATEWAY_LIVE_", LiveSettings),
    ("GATEWAY_", Settings),
)
# Read from the environment before any settings exist (gateway/logs.py), with these defaults.
OUTSIDE_SETTINGS: dict[str, str] = {"GATEWAY_LOG_LEVEL": "INFO", "GATEWAY_LOG_FORMAT": "text"}
_SHOWN = re.compile(r"`[^`]+`(?:,\s*`[^`]+`)*")


@dataclass(frozen=True)
class Row:
    line: int
    variables: tuple[str, ...]  # every variable the row names, `_FILE` forms included
    shown: tuple[str, ...] | None  # the defaults, one per non-file variable; None: in words
    default_cell: str


def _rows() -> list[Row]:
    rows: list[Row] = []
    in_table = False
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.strip() == HEADER:
            in_table = True
            continue
        if not in_table or line.startswith("|---"):
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        variables: list[str] = []
        for token in re.findall(r"`([^`]+)`", cells[0]):
            if token == "_FILE" and variables:
                variables.append(f"{variables[-1]}_FILE")  # "(or `_FILE`)"
            elif token.startswith("GATEWAY_"):
                variables.append(token)
        default = cells[1]
        shown = tuple(re.findall(r"`([^`]+)`", default)) if _SHOWN.fullmatch(default) else None
        rows.append(Row(number, tuple(variables), shown, default))
    return rows


ROWS = _rows()


def _field_of(variable: str) -> tuple[type[BaseSettings], str] | None:
    for prefix, model in MODELS:
        if variable.startswith(prefix):
            name = variable.removeprefix(prefix).lower()
            return (model, name) if name in model.model_fields else None
    return None


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


@pytest.fixture
def effective(monkeypatch: pytest.MonkeyPatch) -> dict[type[BaseSettings], BaseSettings]:
    """Each model as a deployment that sets nothing gets it (defaults derived from others
    included), but outside production, which would want its secrets."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    return {Settings: Settings(environment="development"), LiveSettings: LiveSettings()}


def test_the_readme_has_the_tables() -> None:
    assert len(ROWS) > 50


@pytest.mark.parametrize(
    ("prefix", "model", "name"),
    [(prefix, model, name) for prefix, model in MODELS for name in model.model_fields],
)
def test_every_setting_is_in_a_table(prefix: str, model: type[BaseSettings], name: str) -> None:
    variable = f"{prefix}{name.upper()}"
    assert any(variable in row.variables for row in ROWS), f"README lacks a row for {variable}"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"line{row.line}")
def test_every_row_names_settings(row: Row) -> None:
    assert row.variables, f"README line {row.line} names no variable"
    for variable in row.variables:
        assert variable in OUTSIDE_SETTINGS or _field_of(variable) is not None, (
            f"README line {row.line}: no setting {variable}"
        )


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"line{row.line}")
def test_every_default_is_the_settings_own(
    row: Row, effective: dict[type[BaseSettings], BaseSettings]
) -> None:
    variables = [v for v in row.variables if not v.endswith("_FILE")]
    fields = [_field_of(v) for v in variables]
    if row.shown is None:
        # Said in words: right only for a setting with no plain default to show (a secret, a
        # default derived from another setting, or one made at start).
        for variable, found in zip(variables, fields, strict=True):
            assert found is not None
            model, name = found
            info = model.model_fields[name]
            assert info.default_factory is not None or info.default in (None, ""), (
                f"README line {row.line} should show {variable}'s default, {info.default!r}"
            )
            if info.default == "" and info.default_factory is None:
                assert "empty" in row.default_cell or "`" in row.default_cell, (
                    f"README line {row.line}: say what an unset {variable} means"
                )
        return
    assert len(row.shown) == len(variables), (
        f"README line {row.line}: {len(variables)} variables, {len(row.shown)} defaults"
    )
    for variable, found, shown in zip(variables, fields, row.shown, strict=True):
        if variable in OUTSIDE_SETTINGS:
            assert shown == OUTSIDE_SETTINGS[variable], f"README line {row.line}: {variable}"
            continue
        if "<" in shown:
            continue  # a path under another setting, e.g. `<data_dir>/…`
        assert found is not None
        model, name = found
        value = (
            model.model_fields[name].default
            if name == "environment"
            else getattr(effective[model], name)
        )
        assert shown == _render(value), f"README line {row.line}: {variable} defaults to {value!r}"
