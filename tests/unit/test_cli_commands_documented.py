"""The README's commands table lists exactly the commands `stagger --help` offers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from services.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(stagger [a-z -]+)` \|", re.MULTILINE)


def _leaves(command: Any, path: list[str]) -> Iterator[str]:
    if hasattr(command, "list_commands"):
        for name in command.list_commands(None):
            yield from _leaves(command.get_command(None, name), [*path, name])
    else:
        yield " ".join(path)


def test_every_command_is_in_the_readme_table_and_nothing_else() -> None:
    commands = set(_leaves(typer.main.get_command(app), ["stagger"]))
    section = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    documented = set(ROW.findall(section))
    assert len(commands) >= 20
    assert commands - documented == set(), "commands missing from the README's table"
    assert documented - commands == set(), "the README's table names commands that do not exist"
