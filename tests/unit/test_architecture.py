"""The architecture holds: the import contracts in pyproject.toml, and small modules.

The contracts (services independent, shared below services, pure domain, each service's
layers) are import-linter's; see docs/architecture.md, "One anatomy for every service".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 500


def test_import_contracts_hold(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.cli import lint_imports

    cwd = Path.cwd()
    os.chdir(ROOT)  # import-linter reads pyproject.toml from the working directory
    try:
        exit_code = lint_imports(no_cache=True, no_logo=True)
    finally:
        os.chdir(cwd)
    report = capsys.readouterr().out
    assert exit_code == 0, report
    assert "Contracts: " in report and " broken" in report
    assert "0 broken" in report, report


def long_modules() -> dict[str, int]:
    found: dict[str, int] = {}
    for top in ("services", "shared"):
        for path in (ROOT / top).rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                found[str(path.relative_to(ROOT))] = lines
    return found


def test_no_module_is_longer_than_500_lines() -> None:
    too_long = long_modules()
    assert too_long == {}, f"modules over {MAX_LINES} lines; split them by job"
