"""A migration revision never reads the live models: it imports Alembic and SQLAlchemy only.

A revision that builds its tables from the code's column lists changes what it did whenever the
code changes, so a database migrated before and one migrated after end up different.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REVISIONS = sorted(
    [
        *ROOT.glob("services/*/migrations/versions/*.py"),
        *ROOT.glob("shared/*/migrations/versions/*.py"),
    ]
)
ALLOWED = {"__future__", "alembic", "sqlalchemy", "typing"}


def imported_modules(source: str) -> set[str]:
    """Top-level package names a module imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    return found


def test_revisions_are_found() -> None:
    assert len(REVISIONS) >= 17


@pytest.mark.parametrize("path", REVISIONS, ids=lambda p: p.stem)
def test_a_revision_carries_its_own_ddl(path: Path) -> None:
    foreign = imported_modules(path.read_text()) - ALLOWED
    assert not foreign, (
        f"{path.relative_to(ROOT)} imports {sorted(foreign)}: write the DDL out in the revision "
        "as it is at this revision, so later changes to the code cannot change it"
    )


def test_the_check_sees_an_import_of_the_code() -> None:
    assert imported_modules("from shared.dispatch.schema import tables\nimport alembic.op") == {
        "shared",
        "alembic",
    }
    assert imported_modules("from . import x") == {"."}
