"""Generated and hand-kept documentation agrees with the code."""

from __future__ import annotations

import re
from pathlib import Path

from shared.config import StaggerConfig
from shared.events.catalogue import render_catalogue

ROOT = Path(__file__).resolve().parents[2]


def documented_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `(STAGGER_[A-Z_]+)` \|", readme, flags=re.MULTILINE))


def env_names() -> set[str]:
    from shared.config_registry import all_config_classes

    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in all_config_classes()
        for name in cls.model_fields
    }


def test_readme_configuration_table_lists_every_setting() -> None:
    from shared.config_registry import all_config_classes

    settings = env_names()
    assert StaggerConfig in all_config_classes()
    assert settings - documented_variables() == set(), "settings missing from the README table"


def test_readme_configuration_table_has_no_stale_rows() -> None:
    stale = documented_variables() - env_names()
    assert stale == set(), "README documents settings that do not exist"


def test_event_catalogue_is_current() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == render_catalogue(), (
        "docs/events.md is stale: run `stagger docs events`"
    )


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), f"README links to missing {target}"


def test_asyncapi_documents_are_current() -> None:
    from services.cli.asyncapi import render_all

    documents = render_all()
    committed = {p.name for p in (ROOT / "docs" / "asyncapi").glob("*.json")}
    assert committed == set(documents), "docs/asyncapi/ holds other services than exist"
    for name, text in documents.items():
        assert (ROOT / "docs" / "asyncapi" / name).read_text() == text, (
            f"docs/asyncapi/{name} is stale: run `stagger docs asyncapi`"
        )


def _covers(address: str, subject: str) -> bool:
    """Whether a documented address (NATS wildcards, `{name}` = one token) covers a subject."""
    pattern, tokens = address.split("."), subject.split(".")
    for i, token in enumerate(pattern):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens):
            return False
        wildcard = token == "*" or (token.startswith("{") and token.endswith("}"))
        if not wildcard and token != tokens[i]:
            return False
    return len(pattern) == len(tokens)


def test_every_subject_family_is_in_an_asyncapi_document() -> None:
    """A subject builder added to `shared.bus.subjects` must be documented somewhere."""
    import inspect
    import itertools
    import json

    from services.cli.asyncapi import render_all
    from shared.bus import subjects

    # The audit trail reads every subject (`>`); it must not stand in for the services that
    # own one.
    addresses = [
        channel["address"]
        for text in render_all().values()
        for channel in json.loads(text)["channels"].values()
        if channel["address"] != ">"
    ]
    samples = {
        "channel": ("sms", "email"),
        "command": ("send_now",),
        "service": ("sms_gateway",),
        "method": ("provider_test",),
    }
    builders = [
        fn
        for name, fn in inspect.getmembers(subjects, inspect.isfunction)
        if fn.__module__ == subjects.__name__ and name != "check_token"
    ]
    assert len(builders) >= 20
    missing = []
    for fn in builders:
        names = list(inspect.signature(fn).parameters)
        for values in itertools.product(*(samples.get(n, ("x",)) for n in names)):
            subject = fn(*values)
            if not any(_covers(address, subject) for address in addresses):
                missing.append(f"{fn.__name__}: {subject}")
    assert missing == [], "subjects missing from docs/asyncapi (add them to RAW_FLOWS)"


def test_covers_follows_nats_wildcards() -> None:
    assert _covers("settings.>", "settings.g.s")
    assert not _covers("settings.>", "settings")
    assert _covers("a.{x}.c", "a.b.c")
    assert _covers("a.*", "a.b")
    assert not _covers("a.*", "a.b.c")
    assert not _covers("a.b", "a.c")
