"""SMS webhook ingestion benchmark.

- sms.webhooks: receipts and replies ingested per second through a real SMS gateway process's
  webhook endpoint (`POST /webhooks/sms/simulator`: body cap, the account's sites, signature,
  parsing, the receipt settled with its event, the reply deduplicated, attributed to the last
  message sent to that number, classified and recorded with its event). Each round first
  sends `MESSAGES` SMS through the gateway to the simulator (untimed), then posts, signed as
  the simulator signs them, one `delivered` receipt and one reply per message, `IN_FLIGHT`
  requests at a time, and times them until every one is answered.
  Baseline, in the same run and alternating with it: a bare ASGI callable under uvicorn in its
  own process (`bench.raw_webhooks`) writing the same rows to the same SQLite database for the
  same requests (fresh messages each round, sent the same way).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.harness import Result, alternate, rate
from bench.sms import Bench, _stored
from services.sms_gateway.adapters.tables import DISPATCH
from shared.bus.publisher import publisher_for
from shared.db.engine import create_engine
from shared.domain.accounts import sms_account_id
from shared.domain.site_settings import SmsProvider
from shared.events.schemas.messages import MessageAccepted
from shared.runtime.nats_server import free_port
from shared.sms_signing import ACCOUNT_HEADER, signature_headers

MESSAGES = 500
IN_FLIGHT = 16
ROOT = Path(__file__).resolve().parents[1]


class WebhookBench(Bench):
    """`bench.sms.Bench` (simulator, one gateway) plus a site whose webhooks are signed."""

    async def prepare(self) -> None:
        """The site, its simulator account and the gateway's webhook URL."""
        name, key, credits = await self.account()
        self.name, self.credits = name, credits
        self.webhook_secret = secrets.token_hex(24)
        self.site_id = f"hooks-{secrets.token_hex(3)}"
        provider = {
            "kind": "simulator",
            "account_id": name,
            "secret": key,
            "base_url": self.sim.url,
            "rate_per_second": 1000.0,
            "webhook_secret": self.webhook_secret,
        }
        self.site = await self.handlers.create_site(
            "bench",
            self.site_id,
            {"name": self.site_id, "timezone": "UTC"},
            {
                "sms": {
                    "provider": provider,
                    "mode": "immediate",
                    "sender_id": "Bench",
                    "quiet_hours": {"start": "00:00", "end": "23:59"},
                }
            },
            actor="bench",
        )
        account = sms_account_id(
            SmsProvider.model_validate({**provider, "secret": None, "webhook_secret": None}),
            "bench",
        )
        assert account is not None
        self.tick_account = account
        await self._gateway_knows(self.site_id)
        self.gateway_url = f"http://127.0.0.1:{self.gateway.port}/webhooks/sms/simulator"
        self.database_url = f"sqlite+aiosqlite:///{self.var / 'gateway' / 'sms_gateway.db'}"

    async def send_round(self) -> list[MessageAccepted]:
        """Send fresh messages through the gateway (untimed); the accepted messages."""
        outgoing = self.batch(self.site)[:MESSAGES]
        view = (await self.http.get(f"{self.sim.url}/v1/admin/accounts/{self.name}")).json()
        before = view["credits"]
        ticks = asyncio.create_task(self._ticks(self.tick_account, self.site_id))
        try:
            _stored(await publisher_for(self.nc).publish_all(outgoing))
            while True:
                view = (await self.http.get(f"{self.sim.url}/v1/admin/accounts/{self.name}")).json()
                if view["credits"] <= before - len(outgoing):
                    break
                await asyncio.sleep(0.05)
        finally:
            ticks.cancel()
        accepted = [MessageAccepted.model_validate_json(o.payload) for o in outgoing]
        await self._recorded_sent(accepted)
        return accepted

    async def _recorded_sent(self, accepted: list[MessageAccepted]) -> None:
        """Until the gateway has recorded every send (a receipt before that is answered 503)."""
        engine = create_engine(self.database_url)
        m = DISPATCH.messages
        ids = [a.message_id for a in accepted]
        try:
            while True:
                async with engine.connect() as conn:
                    sent = await conn.scalar(
                        sa.select(sa.func.count())
                        .select_from(m)
                        .where(m.c.message_id.in_(ids), m.c.state == "sent")
                    )
                if sent == len(ids):
                    return
                await asyncio.sleep(0.05)
        finally:
            await engine.dispose()

    def requests(self, accepted: list[MessageAccepted]) -> list[bytes]:
        """A delivered receipt and a reply for each message, as the simulator sends them."""
        now = datetime.now(UTC).isoformat()
        bodies: list[bytes] = []
        for message in accepted:
            receipt = {
                "type": "receipt",
                "account": self.name,
                "reference": message.message_id,
                "id": f"sim-{uuid.uuid4().hex}",
                "status": "delivered",
                "occurred_at": now,
            }
            reply = {
                "type": "inbound",
                "account": self.name,
                "id": f"in-{uuid.uuid4().hex}",
                "from": message.to,
                "to": "Bench",
                "body": "Thanks, see you on Tuesday",
                "received_at": now,
            }
            bodies += [json.dumps(receipt).encode(), json.dumps(reply).encode()]
        return bodies

    async def post_all(self, url: str, bodies: list[bytes]) -> float:
        """POST every body, `IN_FLIGHT` at a time; requests per second until all answered."""
        slots = asyncio.Semaphore(IN_FLIGHT)
        statuses: list[int] = []

        async def post(body: bytes) -> None:
            headers = {
                "content-type": "application/json",
                ACCOUNT_HEADER: self.name,
                **signature_headers(self.webhook_secret, body),
            }
            async with slots:
                response = await self.http.post(url, content=body, headers=headers)
                statuses.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        took = rate(len(bodies), started)
        refused = [s for s in statuses if s != 200]
        if refused:
            raise RuntimeError(f"{len(refused)} webhooks not answered 200: {refused[:5]}")
        return took

    async def gateway_round(self) -> float:
        bodies = self.requests(await self.send_round())
        return await self.post_all(self.gateway_url, bodies)

    async def raw_round(self) -> float:
        bodies = self.requests(await self.send_round())
        return await self.post_all(self.raw_url, bodies)

    def start_raw(self) -> subprocess.Popen[bytes]:
        port = free_port()
        self.raw_url = f"http://127.0.0.1:{port}/"
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.raw_webhooks",
                self.database_url,
                str(port),
                self.webhook_secret,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )

    async def wait_raw(self, process: subprocess.Popen[bytes]) -> None:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError("the raw webhook handler exited")
            try:
                await self.http.get(self.raw_url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the raw webhook handler did not start")


async def sms_webhooks(nats_url: str) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        bench = WebhookBench(nats_url, Path(tmp))
        await bench.start()
        raw: subprocess.Popen[bytes] | None = None
        try:
            await bench.prepare()
            raw = bench.start_raw()
            await bench.wait_raw(raw)
            await bench.raw_round()  # warm both paths
            await bench.gateway_round()
            ours, theirs, ours_all, raw_all = await alternate(
                bench.gateway_round, bench.raw_round, rounds=3
            )
        finally:
            if raw is not None:
                raw.terminate()
                await asyncio.to_thread(raw.wait, 30)
            await bench.stop()
    return [
        Result(
            "sms.webhooks",
            "requests/s",
            ours,
            theirs,
            notes=f"{MESSAGES} delivered receipts + {MESSAGES} replies a round (one of each per "
            "message sent through the gateway beforehand, untimed), signed as the simulator "
            f"signs them, {IN_FLIGHT} in flight, into the SMS gateway process's webhook "
            "endpoint (SQLite); baseline: a bare ASGI callable under uvicorn in its own process "
            "checking the signature and writing the same rows (receipt + its event; reply "
            "dedupe, attribution read, webhook row + its event) to the same database. Median "
            "of 3 alternating rounds.",
            extra={
                "rounds_sms_gateway": [round(v, 1) for v in ours_all],
                "rounds_raw_handler": [round(v, 1) for v in raw_all],
            },
        )
    ]


async def run(nats_url: str) -> list[Result]:
    """Receipts and replies through the gateway's webhook endpoint beside a raw handler."""
    print("   sms_webhooks …", flush=True)
    return await sms_webhooks(nats_url)
