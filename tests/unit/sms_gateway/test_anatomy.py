"""The SMS gateway's layers: pure domain, handlers below entrypoints, no other service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GATEWAY = ROOT / "services" / "sms_gateway"
SIMULATOR = ROOT / "services" / "sms_provider_sim"
IO_LIBRARIES = ("sqlalchemy", "httpx", "nats", "faststream", "starlette", "fastapi", "asyncio")


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def starts(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", modules(GATEWAY / "domain"), ids=lambda p: p.name)
def test_the_domain_does_no_io_and_knows_no_outer_layer(path: Path) -> None:
    outer = ("services.sms_gateway.adapters", "services.sms_gateway.handlers",
             "services.sms_gateway.entrypoints")  # fmt: skip
    bad = {m for m in imports(path) if starts(m, *IO_LIBRARIES, *outer, "shared.dispatch")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules(GATEWAY / "handlers"), ids=lambda p: p.name)
def test_handlers_know_no_entrypoint(path: Path) -> None:
    bad = {m for m in imports(path) if starts(m, "services.sms_gateway.entrypoints")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules(GATEWAY), ids=lambda p: str(p.relative_to(GATEWAY)))
def test_no_part_reaches_for_the_service_object(path: Path) -> None:
    if path.name in ("service.py", "__main__.py"):
        return
    bad = {m for m in imports(path) if starts(m, "services.sms_gateway.service")}
    assert not bad, f"{path.name} imports the service object"


@pytest.mark.parametrize("folder", [GATEWAY, SIMULATOR], ids=["gateway", "simulator"])
def test_neither_service_imports_another(folder: Path) -> None:
    bad = {
        (p.name, m)
        for p in modules(folder)
        for m in imports(p)
        if starts(m, "services") and not starts(m, f"services.{folder.name}")
    }
    assert not bad, sorted(bad)
