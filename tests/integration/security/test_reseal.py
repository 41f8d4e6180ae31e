"""`stagger secrets reseal`: every current secret re-sealed under the first key, so the old key
can be removed; historical events keep what they were sealed with."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from pydantic import SecretStr

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus import subjects
from shared.bus.topology import SETTINGS
from shared.config import StaggerConfig
from shared.domain.site_settings import flatten
from shared.eventstore import EventStore
from shared.privacy.codec import ADDRESS, PersonalData
from shared.secrets import SecretBox, SecretKeyError, generate_key, is_sealed
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.processes import run_cli, service_env, start_service
from tests.support.waiting import wait_until


def _handlers(nc: Client, *keys: str) -> ConfigHandlers:
    box = SecretBox([k.encode() for k in keys])
    return ConfigHandlers(
        nc, SettingsStore(EventStore(nc, SETTINGS)), box, None, simulator_enabled=True
    )


async def _reseal(nats_url: str, keys: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env.update(STAGGER_NATS_URL=nats_url, STAGGER_SECRET_KEY=keys)
    return await run_cli(env, "secrets", "reseal")


async def _current_secrets(store: SettingsStore) -> dict[str, dict[str, str]]:
    """Every sealed value of every group's defaults and site's settings, by aggregate."""
    found: dict[str, dict[str, str]] = {}
    for group_id in await store.group_ids():
        group = await store.group(group_id)
        assert group is not None
        found[f"group {group_id}"] = _sealed(group.defaults.model_dump(mode="json"))
        for site_id in await store.site_ids(group_id):
            site = await store.site(site_id)
            assert site is not None
            found[f"site {site_id}"] = _sealed(site.settings.model_dump(mode="json"))
    return found


def _sealed(settings: dict[str, Any]) -> dict[str, str]:
    return {path: value for path, value in flatten(settings).items() if is_sealed(value)}


def _opened(box: SecretBox, secrets: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {name: {p: box.open(v) for p, v in values.items()} for name, values in secrets.items()}


async def _settings_events(nc: Client) -> int:
    return (await nc.jetstream().stream_info(SETTINGS)).state.messages


async def test_reseal_lets_the_service_run_on_the_new_key_alone(nc: Client, nats_url: str) -> None:
    old, new = generate_key(), generate_key()
    before = _handlers(nc, old)
    # A group default secret (inherited by its sites) and sites' own secrets, in two groups.
    await before.create_group(
        "rs-a", "Group A", {"email": {"smtp": {"password": "group-a-smtp"}}}, actor="test"
    )
    await before.create_site(
        "rs-a", "rs-a1", {"name": "A1"}, {"sms": {"provider": {"secret": "a1-sms"}}}, actor="test"
    )
    await before.create_site("rs-a", "rs-a2", {"name": "A2"}, {}, actor="test")
    await before.create_group("rs-b", "Group B", {}, actor="test")
    await before.create_site(
        "rs-b",
        "rs-b1",
        {"name": "B1"},
        {"email": {"imap": {"password": "b1-imap"}}, "sms": {"provider": {"secret": "b1-sms"}}},
        actor="test",
    )
    store = before.store
    sealed_before = await _current_secrets(store)
    plain = _opened(SecretBox([old.encode()]), sealed_before)
    assert plain["site rs-a2"] == {"email.smtp.password": "group-a-smtp"}
    assert plain["site rs-b1"] == {
        "email.imap.password": "b1-imap",
        "sms.provider.secret": "b1-sms",
    }
    # What a service started with the new key alone could not do before the reseal.
    new_only = SecretBox.from_config(StaggerConfig(secret_key=SecretStr(new)))
    try:
        _opened(new_only, sealed_before)
        raise AssertionError("the new key opened secrets sealed under the old one")
    except SecretKeyError:
        pass
    first_event = await store.events.load("settings.rs-b.rs-b1")
    # The key bucket too: a recipient's data key and the tag key, sealed under the old key.
    personal = PersonalData(nc, SecretBox([old.encode()]))
    number = await personal.seal("rs-a", "+61412345678", ADDRESS, "+61412345678")
    tag = personal.tag("rs-a", "+61412345678")

    code, out, err = await _reseal(nats_url, f"{new},{old}")
    assert code == 0, err
    assert "group rs-a: re-sealed" in out and "site rs-b1: re-sealed" in out
    assert "2 key(s) of privacy_keys re-sealed" in out
    on_new = await PersonalData(nc, new_only).ready()
    assert on_new.tag("rs-a", "+61412345678") == tag
    assert await on_new.open("rs-a", number) == "+61412345678"

    # Started with only the new key, every current secret of every site opens, unchanged.
    assert _opened(new_only, await _current_secrets(store)) == plain
    history = await store.events.load("settings.rs-b.rs-b1")
    assert history.events[-1].actor == "cli:operator"
    assert history.events[-1].data.note == "secrets re-sealed under the current key"  # type: ignore[union-attr]
    changed = {c.path for c in history.events[-1].data.changes}  # type: ignore[union-attr]
    assert changed == {"email.imap.password", "sms.provider.secret"}
    # The old events still hold values sealed under the old key only.
    old_value = first_event.events[0].data.settings.sms.provider.secret  # type: ignore[union-attr]
    try:
        new_only.open(old_value)
        raise AssertionError("a historical value opened without the old key")
    except SecretKeyError:
        pass

    # Nothing left to do: a second run writes no event.
    count = await _settings_events(nc)
    code, out, err = await _reseal(nats_url, f"{new},{old}")
    assert code == 0, err
    assert "0 aggregate(s) re-sealed" in out
    assert "0 key(s) of privacy_keys re-sealed" in out
    assert await _settings_events(nc) == count


async def test_reseal_writes_nothing_when_a_secret_opens_with_no_key(
    nc: Client, nats_url: str
) -> None:
    old, new, stray = generate_key(), generate_key(), generate_key()
    await _handlers(nc, old).create_group("rs-c", "Group C", {}, actor="test")
    await _handlers(nc, old).create_site(
        "rs-c", "rs-c1", {"name": "C1"}, {"sms": {"provider": {"secret": "c1"}}}, actor="test"
    )
    await _handlers(nc, stray).create_site(
        "rs-c",
        "rs-c2",
        {"name": "C2"},
        {"sms": {"provider": {"secret": "c2-plaintext-secret"}}},
        actor="test",
    )
    count = await _settings_events(nc)
    code, _, err = await _reseal(nats_url, f"{new},{old}")
    assert code == 1
    assert "site rs-c2" in err and "sms.provider.secret" in err
    assert "c2-plaintext-secret" not in err
    assert await _settings_events(nc) == count


async def test_an_sms_gateway_on_the_new_key_alone_uses_resealed_provider_secrets(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    old, new = generate_key(), generate_key()
    sim = SimProcess(tmp_path / "sim.log")
    await sim.start()
    try:
        before = _handlers(nc, old)
        provider = {
            "kind": "simulator",
            "account_id": "sim-default",
            "secret": "sim-dev-key",
            "base_url": sim.url,
        }
        await before.create_group("rs-g", "Group G", {}, actor="test")
        for site in ("rs-g1", "rs-g2"):
            await before.create_site(
                "rs-g", site, {"name": site}, {"sms": {"provider": provider}}, actor="test"
            )
        code, _, err = await _reseal(nats_url, f"{new},{old}")
        assert code == 0, err

        env = service_env(nats_url, tmp_path / "var", extra={"STAGGER_SECRET_KEY": new})
        gateway = start_service("sms_gateway", env)
        try:
            for site in ("rs-g1", "rs-g2"):

                async def tested(site: str = site) -> dict[str, Any] | None:
                    reply = await nc.request(
                        subjects.rpc("sms_gateway", "provider_test"),
                        json.dumps({"site_id": site, "group_id": "rs-g", "actor": "test"}).encode(),
                        timeout=20,
                    )
                    answer: dict[str, Any] = json.loads(reply.data)
                    return answer if "unknown site" not in str(answer.get("error")) else None

                answer = await wait_until(tested, timeout=30, message=f"{site} tested")
                # The gateway opened the provider secret with the new key and the simulator
                # accepted it.
                assert answer["ok"] is True, (answer, gateway.logs()[-2000:])
        finally:
            gateway.stop()
    finally:
        sim.terminate()
