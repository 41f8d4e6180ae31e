"""A local HTTP double of Twilio's Programmable Messaging REST API (2010-04-01).

It follows Twilio's published behaviour closely enough to test an adapter against it:

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: HTTP Basic auth (Account SID and
  Auth Token), form fields `To`, `From`, `Body`, `StatusCallback`; answers 201 with a Message
  resource (`sid` "SM…", `status` "queued", `num_segments` as a string, `price` null at first,
  RFC 2822 dates). Errors are JSON `{code, message, more_info, status}`: 20003 (401) bad
  credentials, 21211 invalid `To`, 21602 missing `Body`, 21606 invalid `From`, 21610
  unsubscribed recipient, 20429 (429) too many requests, 20005 account not active (balance
  exhausted). **Not idempotent**, like Twilio: every accepted POST is a new message.
- `GET …/Messages.json` (filters `To`, `From`, `PageSize`, newest first, `next_page_uri`),
  `GET …/Messages/{Sid}.json`, `GET …/Balance.json` (`balance` as a string, `currency`).
- Status callbacks: after accepting, `sent` then `delivered` (or `undelivered` for numbers in
  `undeliverable`) are POSTed form-encoded to the message's StatusCallback, signed with
  `X-Twilio-Signature` (base64 HMAC-SHA1 of the URL + sorted params, keyed by the Auth Token).
- `inbound()` POSTs an incoming message to a webhook the same way.

Faults for tests: `drop_next` (store the message, then close the connection without an
answer), `fail_next` (a list of HTTP statuses to answer instead of accepting), and `faults()`:
a seeded share of creates answered 429 (with Retry-After), 503, or stored then dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.sms_provider_sim.dialects.dropping import DroppableH11Protocol, hold_then_drop
from shared.domain.phone import is_e164
from shared.domain.segments import count_segments
from shared.domain.sender_id import InvalidSenderId, parse_sender_id
from shared.runtime.nats_server import free_port
from tests.support.waiting import wait_until

API = "/2010-04-01/Accounts/{sid}"


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's request signature (independent of the gateway's implementation)."""
    data = url
    for name, value in sorted(params):
        data += name + value
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _error(status: int, code: int, message: str, retry_after: str | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
        headers={"Retry-After": retry_after} if retry_after else None,
    )


@dataclass
class TwilioAccount:
    """One account of the double."""

    sid: str
    token: str
    balance: Decimal = Decimal("20.00")
    price_per_segment: Decimal = Decimal("0.0079")
    currency: str = "USD"


@dataclass
class Post:
    """One `POST …/Messages.json` as it arrived, and what became of it."""

    account: str
    to: str
    body: str
    status: int | None
    sid: str | None


@dataclass
class TwilioDouble:
    """The double, served by uvicorn in the test's event loop."""

    port: int = field(default_factory=free_port)
    accounts: dict[str, TwilioAccount] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    callbacks: list[tuple[str, dict[str, str], int | None]] = field(default_factory=list)
    undeliverable: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)
    drop_next: int = 0
    rates: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Shares of creates answered 429, answered 503, and stored then dropped (`faults`)."""
    rng: random.Random = field(default_factory=random.Random)
    drop_hold_seconds: float = 2.0
    callback_delay: float = 0.2
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def account(self, balance: str = "20.00") -> TwilioAccount:
        """A new account with a random SID and token."""
        account = TwilioAccount(
            sid="AC" + secrets.token_hex(16), token=secrets.token_hex(16), balance=Decimal(balance)
        )
        self.accounts[account.sid] = account
        return account

    def faults(self, seed: int, rate_429: float, rate_5xx: float, rate_drop: float) -> None:
        """Seeded faults: every create draws one number, so a seed gives one fault sequence."""
        self.rng = random.Random(seed)
        self.rates = (rate_429, rate_5xx, rate_drop)

    def posts_for(self, to: str, body: str | None = None) -> list[Post]:
        return [p for p in self.posts if p.to == to and (body is None or p.body == body)]

    # --- HTTP ---------------------------------------------------------------------------------

    def _auth(self, request: Request, sid: str) -> TwilioAccount | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        account = self.accounts.get(sid)
        if account is None or user != sid or not hmac.compare_digest(password, account.token):
            return None
        return account

    async def _create(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        post = Post(sid, form.get("To", ""), form.get("Body", ""), None, None)
        self.posts.append(post)
        account = self._auth(request, sid)
        if account is None:
            post.status = 401
            return _error(401, 20003, "Authenticate")
        draw, (r429, r5xx, rdrop) = self.rng.random(), self.rates
        if draw < r429:
            post.status = 429
            return _error(429, 20429, "Too Many Requests", retry_after="1")
        if draw < r429 + r5xx:
            post.status = 503
            return _error(503, 20500, "Service Unavailable")
        drop = draw < r429 + r5xx + rdrop
        if self.fail_next:
            post.status = self.fail_next.pop(0)
            if post.status == 429:
                return _error(429, 20429, "Too Many Requests")
            return _error(post.status, 20500, "Internal Server Error")
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        problem = None
        if not is_e164(to):
            problem = (400, 21211, f"The 'To' number {to} is not a valid phone number.")
        elif not body:
            problem = (400, 21602, "Message body is required.")
        else:
            try:
                parse_sender_id(sender)
            except (InvalidSenderId, ValueError):
                problem = (400, 21606, f"The From phone number {sender} is not valid.")
        if problem is None and to in self.unsubscribed:
            problem = (400, 21610, "Attempt to send to unsubscribed recipient")
        segments = count_segments(body).segments
        price = account.price_per_segment * segments
        if problem is None and account.balance < price:
            problem = (401, 20005, "Account not active")
        if problem is not None:
            post.status = problem[0]
            return _error(*problem)
        account.balance -= price
        now = format_datetime(datetime.now(UTC), usegmt=True)
        message = {
            "sid": "SM" + secrets.token_hex(16),
            "account_sid": sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "num_segments": str(segments),
            "num_media": "0",
            "direction": "outbound-api",
            "price": None,
            "price_unit": account.currency,
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "api_version": "2010-04-01",
            "uri": f"{API.format(sid=sid)}/Messages/{{}}.json",
            "_price": str(-price),
            "_callback": form.get("StatusCallback"),
        }
        message["uri"] = message["uri"].format(message["sid"])
        self.messages.append(message)
        post.status, post.sid = 201, message["sid"]
        if message["_callback"]:
            self._spawn(self._status_callbacks(account, message))
        if drop or self.drop_next > 0:
            self.drop_next -= 0 if drop else 1
            post.status = None
            await hold_then_drop(request, self.drop_hold_seconds, self._stopping)
            return Response(status_code=204)
        return JSONResponse(self._view(message), status_code=201)

    @staticmethod
    def _view(message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if not k.startswith("_")}

    async def _list(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if self._auth(request, sid) is None:
            return _error(401, 20003, "Authenticate")
        q = request.query_params
        found = [
            m
            for m in reversed(self.messages)
            if m["account_sid"] == sid
            and (not q.get("To") or m["to"] == q["To"])
            and (not q.get("From") or m["from"] == q["From"])
        ]
        size = int(q.get("PageSize", "50"))
        page = int(q.get("Page", "0"))
        chunk = found[page * size : (page + 1) * size]
        base = f"{API.format(sid=sid)}/Messages.json"
        next_uri = None
        if (page + 1) * size < len(found):
            query = urlencode(
                {
                    "To": q.get("To", ""),
                    "From": q.get("From", ""),
                    "PageSize": size,
                    "Page": page + 1,
                }
            )
            next_uri = f"{base}?{query}"
        return JSONResponse(
            {
                "messages": [self._view(m) for m in chunk],
                "page": page,
                "page_size": size,
                "uri": str(request.url.path),
                "next_page_uri": next_uri,
            }
        )

    async def _fetch(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if self._auth(request, sid) is None:
            return _error(401, 20003, "Authenticate")
        for m in self.messages:
            if m["sid"] == request.path_params["msid"] and m["account_sid"] == sid:
                return JSONResponse(self._view(m))
        return _error(404, 20404, "The requested resource was not found")

    async def _balance(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        account = self._auth(request, sid)
        if account is None:
            return _error(401, 20003, "Authenticate")
        return JSONResponse(
            {"account_sid": sid, "balance": f"{account.balance:.5f}", "currency": account.currency}
        )

    # --- webhooks -------------------------------------------------------------------------

    async def _status_callbacks(self, account: TwilioAccount, message: dict[str, Any]) -> None:
        final = "undelivered" if message["to"] in self.undeliverable else "delivered"
        for status in ("sent", final):
            await asyncio.sleep(self.callback_delay)
            message["status"] = status
            if status == "sent":
                message["date_sent"] = format_datetime(datetime.now(UTC), usegmt=True)
                message["price"] = message["_price"]
            params = [
                ("AccountSid", account.sid),
                ("ApiVersion", "2010-04-01"),
                ("From", message["from"]),
                ("MessageSid", message["sid"]),
                ("MessageStatus", status),
                ("SmsSid", message["sid"]),
                ("SmsStatus", status),
                ("To", message["to"]),
            ]
            if status == "undelivered":
                params.append(("ErrorCode", "30003"))
            code = await self.post_signed(account, message["_callback"], params)
            self.callbacks.append((message["sid"], dict(params), code))

    async def post_signed(
        self, account: TwilioAccount, url: str, params: list[tuple[str, str]], retries: int = 5
    ) -> int | None:
        """POST a form the way Twilio does (signed; retried a few times on failure)."""
        headers = {"X-Twilio-Signature": twilio_signature(account.token, url, params)}
        code: int | None = None
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            for attempt in range(retries):
                try:
                    response = await client.post(url, data=dict(params), headers=headers)
                    code = response.status_code
                    if code < 300:
                        return code
                except httpx.HTTPError:
                    code = None
                await asyncio.sleep(0.2 * 2**attempt)
        return code

    async def inbound(
        self, account: TwilioAccount, url: str, sender: str, to: str, body: str
    ) -> tuple[str, int | None]:
        """A patient's SMS to one of the account's numbers, delivered to `url`."""
        sid = "SM" + secrets.token_hex(16)
        params = [
            ("AccountSid", account.sid),
            ("ApiVersion", "2010-04-01"),
            ("Body", body),
            ("From", sender),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
            ("SmsMessageSid", sid),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("To", to),
        ]
        return sid, await self.post_signed(account, url, params, retries=1)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- life -----------------------------------------------------------------------------

    def app(self) -> Starlette:
        base = "/2010-04-01/Accounts/{sid}"
        return Starlette(
            routes=[
                Route(f"{base}/Messages.json", self._create, methods=["POST"]),
                Route(f"{base}/Messages.json", self._list, methods=["GET"]),
                Route(f"{base}/Messages/{{msid}}.json", self._fetch, methods=["GET"]),
                Route(f"{base}/Balance.json", self._balance, methods=["GET"]),
            ]
        )

    async def start(self) -> TwilioDouble:
        server = _QuietServer(
            uvicorn.Config(
                self.app(),
                host="127.0.0.1",
                port=self.port,
                http=DroppableH11Protocol,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        self._server = server
        self._task = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started, timeout=10, message="Twilio double started")
        return self

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._background):
            task.cancel()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


@pytest.fixture(name="twilio")
async def twilio_fixture() -> AsyncIterator[TwilioDouble]:
    """`twilio`: a Twilio double on a free port, for one test (import this to use it)."""
    double = await TwilioDouble().start()
    yield double
    await double.stop()


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
