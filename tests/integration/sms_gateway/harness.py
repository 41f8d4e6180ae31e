"""Run the SMS gateway against real NATS, a real database and the SMS provider simulator.

The gateway runs in-process (`gateway_running`) or as real processes (`gateway_process`, for
replicas and SIGKILL). Sites are created through the config service's handlers, messages
submitted through its submission code, and ticks published the way the scheduler publishes
them (`services.scheduler.adapters.issuing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from services.config.handlers.submission import SubmissionIn, publish, validate
from services.scheduler.adapters.issuing import account_tick
from services.scheduler.domain.planning import AccountTerms, Slot, account_slot
from services.sms_gateway.config import GatewayConfig
from services.sms_gateway.service import SmsGatewayService
from shared.bus.publisher import publisher_for
from shared.bus.topology import DISPATCH, INBOUND, OPTOUTS, PROVIDERS, SETTINGS
from shared.config import StaggerConfig
from shared.domain.accounts import sms_account_id
from shared.domain.site_settings import SmsProvider
from shared.events.envelope import Envelope
from shared.events.schemas.dispatch import TERMINAL_TYPES
from shared.eventstore import EventStore
from shared.privacy.cipher import is_personal
from shared.privacy.codec import PersonalData
from shared.runtime.nats_server import free_port
from shared.runtime.service import running
from shared.secrets import SecretBox, generate_key
from tests.support.processes import ServiceProcess, service_env, start_service
from tests.support.waiting import wait_until

KEY = generate_key()
BOX = SecretBox([KEY.encode()])
WEBHOOK_SECRET = "gateway-test-webhook-secret"
SENDER = "+61491570999"


def midday_zone() -> str:
    """A fixed-offset zone where it is about midday now, so the default quiet hours
    (08:00-21:00 at the recipient) are open for the whole test whenever it runs."""
    offset = (12 - datetime.now(UTC).hour) % 24
    if offset > 12:
        offset -= 24
    # POSIX sign convention: Etc/GMT-3 is three hours *ahead* of UTC.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def number(i: int) -> str:
    """An Australian mobile (+61 4…): no single zone, so the site's zone decides quiet hours."""
    return f"+614{i:08d}"


# --- the simulator ---------------------------------------------------------------------------


@dataclass
class SimAccount:
    """A test's own simulator account."""

    name: str
    api_key: str


class Sim:
    """The simulator's provider and admin API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, timeout: float = 30) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=timeout)

    async def account(
        self,
        *,
        credits: float = 100_000,
        rate: float = 1000,
        webhook: str | None = None,
        **more: Any,
    ) -> SimAccount:
        account = SimAccount(f"acct-{secrets.token_hex(4)}", f"key-{secrets.token_hex(8)}")
        body = {
            "api_key": account.api_key,
            "credits": credits,
            "rate_per_second": rate,
            "webhook_url": webhook,
            "webhook_secret": WEBHOOK_SECRET,
            **more,
        }
        async with self.client() as http:
            response = await http.put(f"/v1/admin/accounts/{account.name}", json=body)
        assert response.status_code == 201, response.text
        return account

    async def update(self, account: SimAccount, **fields: Any) -> dict[str, Any]:
        async with self.client() as http:
            response = await http.put(f"/v1/admin/accounts/{account.name}", json=fields)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def view(self, account: SimAccount) -> dict[str, Any]:
        async with self.client() as http:
            response = await http.get(f"/v1/admin/accounts/{account.name}")
        return dict(response.json())

    async def submissions(self, account: SimAccount) -> list[dict[str, Any]]:
        async with self.client() as http:
            response = await http.get("/v1/admin/submissions", params={"account": account.name})
        return list(response.json())

    async def stored(self, account: SimAccount) -> list[dict[str, Any]]:
        async with self.client() as http:
            response = await http.get("/v1/admin/messages", params={"account": account.name})
        return list(response.json())

    async def faults(self, **config: Any) -> None:
        async with self.client() as http:
            response = await http.put("/v1/admin/faults", json=config)
        assert response.status_code == 200, response.text

    async def clear_faults(self) -> None:
        async with self.client() as http:
            await http.delete("/v1/admin/faults")

    async def reply(
        self, account: SimAccount, sender: str, body: str, *, to: str = SENDER, **more: Any
    ) -> str:
        """A patient's SMS (delivered to the account's webhook, signed)."""
        async with self.client() as http:
            response = await http.post(
                "/v1/admin/inbound",
                json={"account": account.name, "from": sender, "to": to, "body": body, **more},
            )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    async def webhook_attempts(self, event_id: str) -> list[dict[str, Any]]:
        async with self.client() as http:
            response = await http.get("/v1/admin/webhooks", params={"event_id": event_id})
        return list(response.json())


def outcomes_by_reference(submissions: Sequence[dict[str, Any]]) -> dict[str, Counter[str]]:
    """reference → Counter of submission outcomes."""
    found: dict[str, Counter[str]] = {}
    for s in submissions:
        found.setdefault(s["reference"], Counter())[s["outcome"]] += 1
    return found


def assert_exactly_once(submissions: Sequence[dict[str, Any]], references: Sequence[str]) -> None:
    """Each reference stored exactly once at the simulator, and never re-POSTed after that."""
    outcomes = outcomes_by_reference(submissions)
    problems = {}
    for ref in references:
        seen = outcomes.get(ref, Counter())
        if seen["accepted"] + seen["accepted_then_timeout"] != 1 or seen["duplicate"] != 0:
            problems[ref] = dict(seen)
    assert not problems, f"{len(problems)} not exactly once: {list(problems.items())[:5]}"


# --- sites, messages, ticks ------------------------------------------------------------------


def handlers(nc: Client) -> ConfigHandlers:
    return ConfigHandlers(
        nc, SettingsStore(EventStore(nc, SETTINGS)), BOX, None, simulator_enabled=True
    )


async def make_site(
    nc: Client,
    sim: Sim,
    account: SimAccount,
    *,
    site: str | None = None,
    group: str | None = None,
    rate: float = 100,
    mode: str = "immediate",
    sms: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
) -> dict[str, str]:
    """A site sending through the simulator account; returns ids and the account id."""
    group = group or f"g-{secrets.token_hex(3)}"
    site = site or f"s-{secrets.token_hex(3)}"
    h = handlers(nc)
    if await h.store.group(group) is None:
        await h.create_group(group, group, {}, actor="test")
    provider = {
        "kind": "simulator",
        "account_id": account.name,
        "secret": account.api_key,
        "base_url": sim.url,
        "rate_per_second": rate,
        "webhook_secret": WEBHOOK_SECRET,
    }
    await h.create_site(
        group,
        site,
        {"name": site, "timezone": midday_zone(), **(profile or {})},
        {"sms": {"provider": provider, "sender_id": SENDER, "mode": mode, **(sms or {})}},
        actor="test",
    )
    return {
        "group": group,
        "site": site,
        "account": account_of("simulator", account.name, sim.url, group),
    }


def account_of(kind: str, account_id: str, base_url: str, group_id: str) -> str:
    """The gateway's id of a group's provider account."""
    provider = SmsProvider(kind=kind, account_id=account_id, base_url=base_url)  # type: ignore[arg-type]
    found = sms_account_id(provider, group_id)
    assert found is not None
    return found


async def submit(
    nc: Client,
    site_id: str,
    count: int,
    *,
    prefix: str = "m",
    to: str | None = None,
    body: str = "Your check-up is on Monday at 10:00.",
    start: int = 0,
) -> list[str]:
    """Accept messages the way the config API does; returns their ids."""
    site = await handlers(nc).site(site_id)
    batch = SubmissionIn.model_validate(
        {
            "channel": "sms",
            "messages": [
                {"to": to or number(i), "body": body, "idempotency_key": f"{prefix}-{i}"}
                for i in range(start, start + count)
            ],
        }
    )
    ids: list[str] = []
    for chunk in range(0, len(batch.messages), 1000):
        part = SubmissionIn(channel="sms", messages=batch.messages[chunk : chunk + 1000])
        accepted, outgoing = validate(site, part, "test")
        await publish(nc, accepted, outgoing)
        ids += [a.message_id for a in accepted]
    return ids


class AccountTicks:
    """Immediate-mode ticks of one account, as the scheduler publishes them: one per
    `period` on the epoch grid, budget = rate × period, spacing 1/rate."""

    def __init__(
        self, nc: Client, account: str, sites: list[str], rate: float, period: float = 1.0
    ) -> None:
        self._nc = nc
        self.account = account
        self.sites = sites
        self.rate = rate
        self.period = timedelta(seconds=period)
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        publisher = publisher_for(self._nc)
        terms = AccountTerms(
            tuple(self.sites),
            None,
            max(1, round(self.rate * self.period.total_seconds())),
            1 / self.rate,
            "test: immediate SMS",
        )
        while True:
            slot = account_slot(self.period, datetime.now(UTC))
            wait = (slot.instant - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            await publisher.publish_all([account_tick(self.account, terms, slot)])
            self.published += 1
            await asyncio.sleep(0.001)

    def start(self) -> AccountTicks:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> AccountTicks:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def one_tick(account: str, sites: list[str], budget: int, spacing: float = 0.0) -> Any:
    """A single account tick valid for a minute (for tests that release a fixed batch)."""
    now = datetime.now(UTC)
    terms = AccountTerms(tuple(sites), None, budget, spacing, "test: one batch")
    return account_tick(account, terms, Slot(now, now + timedelta(minutes=1)))


async def publish_tick(nc: Client, tick: Any) -> None:
    await publisher_for(nc).publish_all([tick])


# --- events ----------------------------------------------------------------------------------


async def events(nc: Client, stream: str, subject: str | None = None) -> list[Envelope]:
    """Every event of a stream (optionally one subject filter), decoded."""
    return [e async for e in EventStore(nc, stream).replay(filter_subject=subject)]


async def opted_out(nc: Client) -> list[str]:
    """The recipients of the opt-outs on OPTOUTS, opened (sealed at write, docs/privacy.md)."""
    personal = PersonalData(nc, BOX)
    return [
        str(await personal.open(e.data.group_id, e.data.recipient))
        for e in await events(nc, OPTOUTS)
    ]


async def opened_replies(nc: Client) -> list[Any]:
    """The replies on INBOUND, opened: their number and text are sealed at write
    (docs/privacy.md) with the key every gateway of these tests has."""
    personal = PersonalData(nc, BOX)
    opened = []
    for e in await events(nc, INBOUND):
        data = e.data
        assert is_personal(data.from_number) and is_personal(data.body)
        opened.append(
            data.model_copy(
                update={
                    "from_number": await personal.open(data.group_id, data.from_number),
                    "body": await personal.open(data.group_id, data.body),
                }
            )
        )
    return opened


async def provider_events(nc: Client, event_type: str) -> list[Envelope]:
    """Every event of this type in the provider stream (credits, holds, provider tests)."""
    return [e for e in await events(nc, PROVIDERS) if e.type == event_type]


async def at_least(nc: Client, stream: str, n: int, *types: str) -> bool:
    """True once the stream holds `n` events (of these types, when given)."""
    found = [e for e in await events(nc, stream) if not types or e.type in types]
    return len(found) >= n


async def terminal(nc: Client) -> dict[str, list[Envelope]]:
    """message id → its terminal dispatch events."""
    found: dict[str, list[Envelope]] = {}
    for e in await events(nc, DISPATCH):
        if e.type in TERMINAL_TYPES:
            found.setdefault(e.data.message_id, []).append(e)  # type: ignore[attr-defined]
    return found


INTAKE_TIMEOUT = 60.0
"""Intake takes milliseconds; the wait is generous because a message that misses a fetch is
only redelivered after the outbox consumer's 30 s ack wait."""


@dataclass(frozen=True)
class Seen:
    """A falsy poll result that still shows what was seen when a wait times out."""

    value: object

    def __bool__(self) -> bool:
        return False


async def wait_queued(gw: SmsGatewayService, n: int, timeout: float = INTAKE_TIMEOUT) -> None:
    """Until the gateway holds exactly `n` messages waiting (queued or being sent)."""

    async def check() -> bool | Seen:
        depth = await gw.engine.queue.depth()
        return True if depth == n else Seen(depth)

    await wait_until(check, timeout=timeout, message=f"{n} messages waiting")


async def wait_terminal(nc: Client, ids: Sequence[str], timeout: float = 60) -> None:
    """Until every message has a terminal event."""
    wanted = set(ids)

    async def done() -> bool:
        return wanted <= set(await terminal(nc))

    await wait_until(done, timeout=timeout, interval=0.5, message=f"{len(ids)} terminal events")


# --- the gateway -----------------------------------------------------------------------------


def gateway_settings(**overrides: Any) -> GatewayConfig:
    defaults: dict[str, Any] = {
        "recovery_seconds": 0.5,
        "lease_seconds": 10.0,
        "http_timeout_seconds": 5.0,
        "retry_base_seconds": 0.2,
        "retry_cap_seconds": 1.0,
        "resume_poll_seconds": 0.5,
        "balance_report_seconds": 0.5,
        # The simulator lists a message as soon as it has it: no real report lag to wait out.
        "report_lag_seconds": 1.0,
    }
    return GatewayConfig(**{**defaults, **overrides})


@contextlib.asynccontextmanager
async def gateway_running(
    nats_url: str,
    database_url: str,
    var_dir: Path,
    *,
    instance: str = "gw-1",
    port: int | None = None,
    simulator: bool = True,
    **overrides: Any,
) -> AsyncIterator[SmsGatewayService]:
    """One gateway replica in this event loop (`simulator`: the deployment enables it)."""
    settings = StaggerConfig(
        nats_url=nats_url,
        database_url=database_url,
        var_dir=var_dir,
        instance_id=instance,
        sms_gateway_http_port=port or free_port(),
        heartbeat_seconds=0.5,
        drain_timeout_seconds=5,
        secret_key=KEY,  # type: ignore[arg-type]
        sms_simulator_enabled=simulator,
    )
    service = SmsGatewayService(gateway_settings(**overrides))
    async with running(service, settings):
        yield service


def webhook_url(gateway: SmsGatewayService) -> str:
    """Where the simulator must POST this replica's receipts and replies."""
    return f"{gateway.webhook_base_url()}/webhooks/sms/simulator"


def gateway_process(
    nats_url: str, var_dir: Path, database_url: str, instance: str, **settings: str
) -> ServiceProcess:
    """One gateway replica as a real process (for SIGKILL and several replicas)."""
    extra = {
        "STAGGER_SECRET_KEY": KEY,
        "STAGGER_INSTANCE_ID": instance,
        "STAGGER_SMS_GATEWAY_RECOVERY_SECONDS": "0.5",
        "STAGGER_SMS_GATEWAY_LEASE_SECONDS": "6",
        "STAGGER_SMS_GATEWAY_HTTP_TIMEOUT_SECONDS": "5",
        "STAGGER_SMS_GATEWAY_RETRY_BASE_SECONDS": "0.2",
        "STAGGER_SMS_GATEWAY_RETRY_CAP_SECONDS": "1",
        "STAGGER_SMS_GATEWAY_REPORT_LAG_SECONDS": "1",
        **{f"STAGGER_SMS_GATEWAY_{k.upper()}": v for k, v in settings.items()},
    }
    env = service_env(nats_url, var_dir, database_url, extra=extra)
    return start_service("sms_gateway", env)
