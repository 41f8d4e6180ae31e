"""Scale-out benchmarks: does a second gateway replica add throughput?

- sms.scaleout: messages/s from the outbox to the SMS provider simulator through two SMS
  gateway processes sharing one PostgreSQL database, beside (baseline) the same through one of
  them. The simulator answers each send after 50 ms, as real providers take tens of
  milliseconds: each replica's sends in flight (`PARALLEL_SENDS`) bound its rate, not the CPU.
  `SITES` sites in immediate mode, each on its own simulator account, so the account ticks
  (one per account a second, as the scheduler publishes them) are shared out between the
  replicas by the TICKS work queue.
- email.scaleout: the same for the email gateway, with the project's SMTP sink answering each
  message after 50 ms; `SITES` sites each with their own SMTP login (one account each), a
  send-now tick per site every 0.25 s.

Both run on one set-up (`bench/replicas.py`); a round's rate counts from its first send to its
last. value = rate with two replicas, baseline = rate with one, ratio = value ÷ baseline (2.0
is perfect scaling). Rounds alternate: one replica, then the second started and both
measured, then the second stopped again. Both need PostgreSQL on 127.0.0.1:5432 (replicas
share a database); without it each is skipped with the reason printed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.harness import Result
from bench.replicas import MESSAGES, PER_SITE, SITES, Round, Scaleout, scaleout
from services.email_gateway.adapters.tables import DISPATCH as EMAIL_DISPATCH
from services.scheduler.adapters.issuing import account_tick
from services.scheduler.domain.planning import AccountTerms, Slot
from services.sms_gateway.adapters.tables import DISPATCH as SMS_DISPATCH
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.domain.accounts import sms_account_id
from shared.domain.site_settings import SmsProvider
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.ticks import TickIssued
from shared.runtime.nats_server import free_port
from tests.integration.sms_provider_sim.harness import SimProcess

ANSWER_MS = 50
PARALLEL_SENDS = 4
"""Sends in flight per SMS replica: at 50 ms an answer, at most 80 messages/s each."""
RATE = 1000.0
STARTUP_SECONDS = 120
"""How long the provider may take to start (a spawned Python process, on a busy machine)."""
BODY = "Dear patient, your check-up is due. Reply YES to book or call us on 0123 456 789."


# --- SMS --------------------------------------------------------------------------------------


class SmsScaleout(Scaleout):
    """Simulator with latency, `SITES` immediate-mode sites on their own accounts."""

    name = "sms.scaleout"
    service = "sms_gateway"
    group = "scale-sms"
    messages = SMS_DISPATCH.messages

    async def start_provider(self) -> None:
        self.sim = SimProcess(self.var / "sim.log", STAGGER_LOG_LEVEL="WARNING")
        self.http = httpx.AsyncClient(trust_env=False, timeout=30)
        self.accounts: list[str] = []
        await self.sim.start(timeout=STARTUP_SECONDS)
        faults = {"latency_ms": [ANSWER_MS, ANSWER_MS]}
        response = await self.http.put(f"{self.sim.url}/v1/admin/faults", json=faults)
        assert response.status_code < 300, response.text

    async def stop_provider(self) -> None:
        self.sim.terminate()
        await self.http.aclose()

    async def site_settings(self, i: int) -> dict[str, Any]:
        name, key = f"scale-{i}-{secrets.token_hex(3)}", secrets.token_hex(12)
        response = await self.http.put(
            f"{self.sim.url}/v1/admin/accounts/{name}",
            json={"api_key": key, "credits": 1_000_000, "rate_per_second": 100_000},
        )
        assert response.status_code == 201, response.text
        provider = {
            "kind": "simulator",
            "account_id": name,
            "secret": key,
            "base_url": self.sim.url,
            "rate_per_second": RATE,
        }
        account = sms_account_id(
            SmsProvider.model_validate({**provider, "secret": None}), self.group
        )
        assert account is not None
        self.accounts.append(account)
        # Quiet hours all but one minute of the day: the guard runs, it does not wait.
        return {
            "sms": {
                "provider": provider,
                "mode": "immediate",
                "sender_id": "Bench",
                "quiet_hours": {"start": "00:00", "end": "23:59"},
            }
        }

    def env(self) -> dict[str, str]:
        return {
            "STAGGER_SMS_GATEWAY_PARALLEL_SENDS": str(PARALLEL_SENDS),
            # A worker per account tick: an account tick finding its queue empty may wait out
            # its second for arrivals, holding a worker (see docs/operations.md).
            "STAGGER_SMS_GATEWAY_TICK_WORKERS": str(2 * SITES),
        }

    def message(self, i: int) -> dict[str, Any]:
        return {"to": f"+614{i:08d}", "body": BODY}

    async def ticks(self) -> None:
        """Account ticks for every account each second, as the scheduler publishes them."""
        publisher = publisher_for(self.nc)
        period = timedelta(seconds=1)
        while True:
            at = datetime.now(UTC)
            ticks = [
                account_tick(
                    account,
                    AccountTerms((site.site_id,), self.group, int(RATE), 1 / RATE, "bench"),
                    Slot(at, at + period),
                )
                for site, account in zip(self.sites, self.accounts, strict=True)
            ]
            await publisher.publish_all(ticks)
            await asyncio.sleep(period.total_seconds())

    def notes(self) -> str:
        return (
            f"{MESSAGES} SMS a round over {SITES} immediate-mode sites, each on its own "
            f"simulator account (account ticks every 1 s), outbox → SMS gateway replicas on "
            f"one PostgreSQL database → simulator answering each send after {ANSWER_MS} ms, "
            f"{PARALLEL_SENDS} sends in flight per replica (≤ "
            f"{PARALLEL_SENDS * 1000 // ANSWER_MS}/s each), {2 * SITES} tick workers per replica"
        )


# --- email ------------------------------------------------------------------------------------


def _serve(port: int, counter: Any, ready: Any) -> None:
    """The SMTP server process: the project's sink answering after 50 ms, keeping nothing."""
    from services.smtp_sink.composition import build_server
    from services.smtp_sink.config import SinkConfig

    async def main() -> None:
        config = SinkConfig(port=port, store=False, reply_delay_seconds=ANSWER_MS / 1000)
        server = build_server(config, None)

        def count(_: Any) -> None:
            with counter.get_lock():
                counter.value += 1
            server.handler.received.clear()  # keep memory flat

        server.handler.listeners.append(count)
        await server.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


class EmailScaleout(Scaleout):
    """An SMTP sink with a 50 ms answer, `SITES` sites each with its own SMTP login."""

    name = "email.scaleout"
    service = "email_gateway"
    group = "scale-mail"
    messages = EMAIL_DISPATCH.messages

    async def start_provider(self) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        ready = context.Event()
        self.server = context.Process(
            target=_serve, args=(self.port, self.counter, ready), daemon=True
        )
        self.server.start()
        # `ready` must outlive the child's start: its semaphore goes with the last reference.
        self.ready = ready
        if not await asyncio.to_thread(ready.wait, STARTUP_SECONDS):
            raise RuntimeError(f"the SMTP server did not start in {STARTUP_SECONDS} s")

    async def stop_provider(self) -> None:
        self.server.terminate()
        self.server.join(10)

    async def site_settings(self, i: int) -> dict[str, Any]:
        return {
            "email": {
                "enabled": True,
                "address": f"front{i}@smile.example",
                "display_name": "Smile Dental",
                # Its own login: its own account, so sites' ticks spread over the replicas.
                "smtp": {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "security": "none",
                    "username": f"front{i}@smile.example",
                },
                "mode": "manual",
                "per_minute": 0,
                "provider_preset": "custom",
            }
        }

    def env(self) -> dict[str, str]:
        return {"STAGGER_EMAIL_GATEWAY_LOCAL_HOSTNAME": "bench.local"}

    def message(self, i: int) -> dict[str, Any]:
        return {
            "to": f"patient{i}@example.org",
            "subject": f"Your check-up is due ({i})",
            "body": BODY,
            "category": "reminder",
        }

    async def measure(self) -> Round:
        """As every channel's, and the SMTP server took as many as the ledger says sent."""
        before = self.counter.value
        measured = await super().measure()
        assert self.counter.value - before >= MESSAGES, "the SMTP server got fewer than sent"
        return measured

    async def ticks(self) -> None:
        """A send-now tick per site every 0.25 s while messages flow in."""
        publisher = publisher_for(self.nc)
        while True:
            now = datetime.now(UTC)
            out = []
            for site in self.sites:
                tick_id = uuid.uuid4().hex
                data = TickIssued(
                    tick_id=tick_id,
                    channel="email",
                    scope="site",
                    site_id=site.site_id,
                    account="bench",
                    budget=PER_SITE,
                    spacing_seconds=0.0,
                    scheduled_at=now,
                    not_before=now,
                    # Short-lived, as a cycle's: leftovers of a round do not pile up.
                    not_after=now + timedelta(seconds=2),
                    reason="bench send-now",
                    manual=True,
                )
                headers, body = encode(
                    make_event(data, source="bench", actor="bench", event_id=tick_id)
                )
                out.append(Outgoing(subjects.tick_site("email", site.site_id), body, headers))
            await publisher.publish_all(out)
            await asyncio.sleep(0.25)

    def notes(self) -> str:
        return (
            f"{MESSAGES} emails a round over {SITES} sites, each with its own SMTP login (its "
            f"own account), a send-now tick per site every 0.25 s, outbox → email gateway "
            f"replicas on one PostgreSQL database → the project's SMTP sink answering each "
            f"message after {ANSWER_MS} ms"
        )


async def run(nats_url: str) -> list[Result]:
    """Two gateway replicas against one, SMS and email (one failing keeps the other's entry)."""
    results: list[Result] = []
    for kind in (SmsScaleout, EmailScaleout):
        print(f"   {kind.name} …", flush=True)
        try:
            results += await scaleout(kind, nats_url)
        except Exception as exc:
            print(f"!! {kind.name} failed: {exc!r}", flush=True)
    return results
