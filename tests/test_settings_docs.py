"""The settings' declarations, the README's configuration table and CONTRACT §1 say the same thing."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from shared.settings import SETTING_NAMES, Settings, settings_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"
BEGIN, END = "<!-- settings-table:", "<!-- end settings-table -->"


def table_rows(markdown: str) -> dict[str, str]:
    """{setting name: default cell} of a markdown table whose first column lists `NAME`s (several per row allowed)."""
    rows: dict[str, str] = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            rows[name] = cells[1].strip("`")
    return rows


def declared_defaults() -> dict[str, str]:
    """{setting name: default as the tables write it} from the declarations."""
    return {name: default.strip("`") for name, default in table_rows(settings_table()).items()}


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(BEGIN)
    return text[text.index("\n", start) + 1 : text.index(END)].strip()


def test_the_readme_table_is_the_declarations_table() -> None:
    """README.md holds settings_table()'s output verbatim; regenerate it after changing a declaration."""
    assert readme_section() == settings_table()


def test_the_readme_table_names_each_declared_setting_once_with_its_default() -> None:
    """Row by row: every declared setting is documented, with its default, and every documented one exists."""
    documented = table_rows(readme_section())
    assert list(documented) == list(SETTING_NAMES)
    assert documented == declared_defaults()


def test_every_declaration_has_a_parser_and_documentation() -> None:
    """A setting without a rule or a meaning would be read by nobody, or read wrong."""
    for declared in fields(Settings):
        assert declared.metadata["env"] and callable(declared.metadata["parse"]) and declared.metadata["doc"].strip()
    assert len(set(SETTING_NAMES)) == len(SETTING_NAMES)


def contract_section() -> str:
    """CONTRACT.md's §1, read from beside the repository (the lead's checkout layout)."""
    if not CONTRACT.exists():
        pytest.skip(f"{CONTRACT} is not beside the repository (it lives in the project's shared folder)")
    text = CONTRACT.read_text(encoding="utf-8")
    return text[text.index("## 1. Settings") : text.index("## 2.")]


def test_the_declarations_are_contract_section_1() -> None:
    """Each setting of the contract's table is declared with the contract's default."""
    contract = table_rows(contract_section())
    declared = declared_defaults()
    assert set(contract) <= set(declared), sorted(set(contract) - set(declared))
    assert {name: declared[name] for name in contract} == contract


def test_every_declared_setting_is_in_contract_section_1() -> None:
    """A setting outside the table is one the contract mentions in words (the Functions connection properties)."""
    section = contract_section()
    contract = table_rows(section)
    for name in set(SETTING_NAMES) - set(contract):
        assert name in section or name.removeprefix("ServiceBusConnection") in section, name
