"""The simulator's behaviour, independent of HTTP: sending, receipts, inbound, admin changes."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

from services.sms_provider_sim.adapters.persistence import Persister, read_state
from services.sms_provider_sim.adapters.store import Store
from services.sms_provider_sim.adapters.webhooks import WebhookSender
from services.sms_provider_sim.config import SimulatorConfig
from services.sms_provider_sim.dialects import dialect_registry
from services.sms_provider_sim.domain.errors import ApiError, invalid, validate
from services.sms_provider_sim.domain.faults import FaultConfig, FaultInjector
from services.sms_provider_sim.domain.models import (
    Account,
    AccountUpdate,
    AutoTopup,
    InboundMessage,
    InboundRequest,
    Message,
    SendRequest,
    Submission,
    SubmissionOutcome,
    Topup,
    new_id,
    now_iso,
    number,
)
from services.sms_provider_sim.domain.outcome import SendOutcome
from services.sms_provider_sim.domain.ratelimit import RateLimiter
from shared.domain.segments import count_segments
from shared.logs import register_secret

log = logging.getLogger("services.sms_provider_sim")


class StateFileError(RuntimeError):
    """The state file exists but cannot be loaded; the simulator will not start."""


class Simulator:
    """State, faults, rate limits and background work of one simulator instance."""

    def __init__(
        self,
        settings: SimulatorConfig,
        *,
        store: Store,
        faults: FaultInjector,
        limiter: RateLimiter,
        webhooks: WebhookSender,
        persister: Persister | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.faults = faults
        self.limiter = limiter
        self.webhooks = webhooks
        self.dialects = dialect_registry()
        # Set on SIGTERM/SIGINT: held requests stop waiting so the server can exit promptly.
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._persister = persister

    # lifecycle

    async def start(self) -> None:
        """Load saved state, make sure the default account exists, start background work."""
        if self.settings.state_file is not None:
            try:
                saved = read_state(self.settings.state_file)
                if saved is not None:
                    self.store.load(saved)
            except (OSError, ValueError) as exc:
                # Refuse to start rather than overwrite a file holding someone's credits.
                raise StateFileError(
                    f"cannot load the state file {self.settings.state_file}: {exc}"
                ) from exc
        self._ensure_default_account()
        for account in self.store.accounts.values():
            register_secret(account.api_key)
            register_secret(account.webhook_secret)
        await self.webhooks.start()
        if self._persister is not None:
            self._persister.start()
            self._persister.mark_dirty()
        # Messages accepted before a restart still get their receipts.
        for message in self.store.messages.values():
            if message.status == "accepted":
                self.spawn(self._receipt(message.id), f"receipt:{message.id}")
        log.info(
            "simulator ready",
            extra={
                "accounts": len(self.store.accounts),
                "messages": len(self.store.messages),
                "state_file": str(self.settings.state_file) if self.settings.state_file else None,
            },
        )

    def _ensure_default_account(self) -> None:
        s = self.settings
        api_key = s.default_api_key.get_secret_value()
        secret = s.default_webhook_secret.get_secret_value()
        existing = self.store.accounts.get(s.default_account)
        if existing is None:
            owner = self.store.key_owner(api_key)
            if owner is not None:
                raise ValueError(f"the default API key already belongs to account {owner!r}")
            self.store.put_account(
                Account(
                    name=s.default_account,
                    api_key=api_key,
                    balance=Decimal(s.default_credits),
                    webhook_url=s.default_webhook_url,
                    webhook_secret=secret,
                )
            )
            return
        # The environment stays authoritative for credentials and webhook; the balance and
        # everything else come from the state file, so a restart keeps credits.
        owner = self.store.key_owner(api_key)
        if owner is not None and owner != existing.name:
            raise ValueError(f"the default API key already belongs to account {owner!r}")
        self.store.update_account(
            existing,
            {"api_key": api_key, "webhook_url": s.default_webhook_url, "webhook_secret": secret},
        )

    def begin_shutdown(self) -> None:
        """Release held requests (called from the signal handler)."""
        self.stopping.set()

    async def stop(self) -> None:
        """Cancel background work and write the final state."""
        self.begin_shutdown()
        await self._cancel_tasks()
        await self.webhooks.close()
        if self._persister is not None:
            await self._persister.close()
        log.info("simulator stopped")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `coro` in the background; it is cancelled on shutdown and on reset."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "background task failed", exc_info=finished.exception(), extra={"task": name}
                )

        task.add_done_callback(done)

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def persist(self) -> None:
        """Note a change that the state file must receive."""
        if self._persister is not None:
            self._persister.mark_dirty()

    # provider API

    def authenticate(self, authorization: str | None) -> Account | None:
        """The account whose key is in an `Authorization: Bearer <key>` header."""
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.store.account_for_key(key.strip())

    def record_submission(self, account: str | None, reference: str | None) -> Submission:
        """Note an attempt on arrival, so the admin list is in arrival order."""
        submission = Submission(reference=reference, account=account, received_at=now_iso())
        self.store.submissions.append(submission)
        return submission

    @staticmethod
    def _finish(
        submission: Submission, outcome: SubmissionOutcome, result: SendOutcome
    ) -> SendOutcome:
        submission.outcome = outcome
        dropped = result.drop_after_seconds is not None
        submission.status_code = None if dropped else result.status_code
        submission.message_id = result.body.get("id")
        return result

    async def send(
        self,
        account: Account,
        data: object,
        parse_error: ApiError | None,
        sub: Submission,
        *,
        idempotent: bool = True,
    ) -> SendOutcome:
        """Everything `POST /v1/messages` does after authentication (and what a dialect's send
        does with the request translated; `idempotent=False` for providers that store every
        POST as a new message whatever its reference)."""
        decision = self.faults.draw()
        # The bucket is checked on arrival; the injected latency delays the answer only.
        wait = self.limiter.take(account.name, account.rate_per_second)
        if decision.latency_seconds > 0:
            await asyncio.sleep(decision.latency_seconds)
        if wait > 0:
            # Real providers send whole seconds; round up so a client honouring it succeeds.
            retry_after = str(max(1, math.ceil(wait)))
            return self._finish(
                sub,
                "rejected_429",
                SendOutcome(429, {"error": "rate_limited"}, {"Retry-After": retry_after}),
            )
        faults = self.faults.config
        if decision.reject_429:
            retry_after = str(faults.retry_after_seconds)
            return self._finish(
                sub,
                "rejected_429",
                SendOutcome(429, {"error": "rate_limited"}, {"Retry-After": retry_after}),
            )
        if decision.reject_5xx:
            return self._finish(
                sub, "rejected_5xx", SendOutcome(503, {"error": "service_unavailable"})
            )
        try:
            if parse_error is not None:
                raise parse_error
            request = validate(SendRequest, data)
        except ApiError as exc:
            return self._finish(sub, "invalid", SendOutcome(exc.status_code, exc.body))

        # From here to the end there is no await: the duplicate check, the debit and the
        # insert happen as one step, so concurrent duplicates cannot both be accepted.
        existing = self.store.find_by_reference(account.name, request.reference)
        if existing is not None and idempotent:
            return self._finish(
                sub, "duplicate", SendOutcome(200, {**existing.response, "duplicate": True})
            )
        counted = count_segments(request.body)
        cost = counted.segments * account.credits_per_segment
        available = Decimal(0) if faults.exhaust_credits else account.balance
        if cost > available:
            body = {
                "error": "insufficient_credits",
                "balance": number(available),
                "required": number(cost),
            }
            return self._finish(sub, "insufficient_credits", SendOutcome(402, body))
        account.balance -= cost
        accepted_at = now_iso()
        message_id = new_id("sim-")
        response: dict[str, Any] = {
            "id": message_id,
            "reference": request.reference,
            "status": "accepted",
            "segments": counted.segments,
            "encoding": counted.encoding,
            "cost": number(cost),
            "balance": number(account.balance),
        }
        self.store.add_message(
            Message(
                id=message_id,
                account=account.name,
                reference=request.reference,
                to=request.to,
                sender=request.sender,
                body=request.body,
                callback_url=request.callback_url,
                segments=counted.segments,
                encoding=counted.encoding,
                cost=cost,
                accepted_at=accepted_at,
                updated_at=accepted_at,
                response=response,
            )
        )
        self.persist()
        # Never the key, the body or the number: logs must not carry secrets or patient data.
        log.info(
            "message accepted",
            extra={
                "account": account.name,
                "message_id": message_id,
                "reference": request.reference,
                "segments": counted.segments,
                "encoding": counted.encoding,
                "cost": str(cost),
                "balance": str(account.balance),
                "dropped": decision.timeout_after_accept,
            },
        )
        self.spawn(self._receipt(message_id), f"receipt:{message_id}")
        if decision.timeout_after_accept:
            return self._finish(
                sub,
                "accepted_then_timeout",
                SendOutcome(201, response, drop_after_seconds=faults.timeout_hold_seconds),
            )
        if decision.answer_delay_seconds > 0:
            # Debited already: an answer held here carries a balance older than the answers
            # of requests debited after it, which may overtake it.
            await asyncio.sleep(decision.answer_delay_seconds)
        return self._finish(sub, "accepted", SendOutcome(201, response))

    def message(self, account: Account, message_id: str) -> Message:
        """One of the account's messages by simulator id, or 404."""
        message = self.store.messages.get(message_id)
        if message is None or message.account != account.name:
            raise ApiError(404, {"error": "not_found"})
        return message

    def message_by_reference(self, account: Account, reference: str) -> Message:
        """One of the account's messages by our reference, or 404."""
        message = self.store.find_by_reference(account.name, reference)
        if message is None:
            raise ApiError(404, {"error": "not_found"})
        return message

    def topup(self, account: Account, amount: int) -> Decimal:
        """Add credits; returns the new balance."""
        account.balance += amount
        account.topups.append(Topup(amount=amount, balance_after=account.balance, at=now_iso()))
        self.persist()
        log.info(
            "credits topped up",
            extra={"account": account.name, "amount": amount, "balance": str(account.balance)},
        )
        return account.balance

    # receipts and inbound

    async def _receipt(self, message_id: str) -> None:
        await asyncio.sleep(self.settings.receipt_delay_seconds)
        message = self.store.messages.get(message_id)
        if message is None or message.status != "accepted":
            return
        account = self.store.accounts.get(message.account)
        prefixes = account.undeliverable_prefixes if account else []
        undeliverable = any(message.to.startswith(prefix) for prefix in prefixes)
        message.status = "undelivered" if undeliverable else "delivered"
        message.error_code = "unreachable" if undeliverable else None
        message.updated_at = now_iso()
        self.persist()
        if account is not None and account.dialect != "sim":
            outgoing = self.dialects[account.dialect].receipt(account, message)
            for _ in range(2 if self.faults.duplicate_receipt() else 1):
                await self.webhooks.deliver_outgoing("receipt", message.id, account.name, outgoing)
            return
        url = message.callback_url or (account.webhook_url if account else None)
        if account is None or url is None:
            return
        payload = {
            "type": "receipt",
            "account": account.name,
            "id": message.id,
            "reference": message.reference,
            "status": message.status,
            "error_code": message.error_code,
            "segments": message.segments,
            "occurred_at": message.updated_at,
        }
        await self.webhooks.deliver(
            kind="receipt",
            event_id=message.id,
            reference=message.reference,
            account=account.name,
            url=url,
            secret=account.webhook_secret,
            payload=payload,
        )

    def inbound(self, request: InboundRequest) -> InboundMessage:
        """Record a patient's reply and deliver it to the account's webhook."""
        account = self.store.accounts.get(request.account)
        if account is None:
            raise ApiError(404, {"error": "unknown_account", "account": request.account})
        inbound = InboundMessage(
            id=new_id("sim-in-"),
            account=account.name,
            sender=request.sender,
            to=request.to,
            body=request.body,
            received_at=now_iso(),
            in_reply_to=request.in_reply_to,
        )
        self.store.inbound.append(inbound)
        outgoing = None
        if account.dialect != "sim":
            answered = self.store.find_by_reference(account.name, inbound.in_reply_to or "")
            outgoing = self.dialects[account.dialect].inbound(account, inbound, answered)
        if outgoing is not None:
            work = self.webhooks.deliver_outgoing("inbound", inbound.id, account.name, outgoing)
            self.spawn(work, f"inbound:{inbound.id}")
        elif account.webhook_url is not None and account.dialect == "sim":
            self.spawn(
                self.webhooks.deliver(
                    kind="inbound",
                    event_id=inbound.id,
                    reference=inbound.in_reply_to,
                    account=account.name,
                    url=account.webhook_url,
                    secret=account.webhook_secret,
                    payload=inbound.payload(),
                ),
                f"inbound:{inbound.id}",
            )
        return inbound

    # admin

    def upsert_account(self, name: str, update: AccountUpdate) -> tuple[Account, bool]:
        """Create or partially update an account; returns it and whether it is new."""
        if update.dialect not in (None, "sim", *self.dialects):
            raise invalid("dialect", f"one of sim, {', '.join(sorted(self.dialects))}")
        if update.api_key is not None:
            owner = self.store.key_owner(update.api_key)
            if owner is not None and owner != name:
                raise ApiError(
                    409,
                    {
                        "error": "conflict",
                        "field": "api_key",
                        "detail": "another account uses this API key",
                    },
                )
        account = self.store.accounts.get(name)
        created = account is None
        if account is None:
            account = Account(
                name=name,
                api_key=new_id("sim-key-"),
                balance=Decimal(0),
                webhook_secret=new_id("sim-whsec-"),
            )
            self.store.put_account(account)
        changes: dict[str, Any] = {}
        given = update.model_fields_set
        if update.api_key is not None:
            changes["api_key"] = update.api_key
        if update.credits is not None:
            changes["balance"] = update.credits
        if update.credits_per_segment is not None:
            changes["credits_per_segment"] = update.credits_per_segment
        if update.rate_per_second is not None:
            changes["rate_per_second"] = update.rate_per_second
        if "webhook_url" in given:  # an explicit null removes the webhook
            changes["webhook_url"] = update.webhook_url
        if "inbound_url" in given:
            changes["inbound_url"] = update.inbound_url
        changes |= update.model_dump(include={"dialect", "currency"}, exclude_none=True)
        if update.webhook_secret is not None:
            changes["webhook_secret"] = update.webhook_secret
        if update.auto_topup is not None:
            current = account.auto_topup.model_dump()
            changes["auto_topup"] = AutoTopup.model_validate(
                current | update.auto_topup.model_dump(exclude_none=True)
            )
        if update.undeliverable_prefixes is not None:
            changes["undeliverable_prefixes"] = list(update.undeliverable_prefixes)
        # Changed in place: a send in flight holds this same object and must debit it.
        self.store.update_account(account, changes)
        register_secret(account.api_key)
        register_secret(account.webhook_secret)
        self.persist()
        return account, created

    def configure_faults(self, config: FaultConfig) -> None:
        """Replace the fault configuration."""
        self.faults.configure(config)
        log.info("faults configured", extra={"faults": config.model_dump()})

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.faults.clear()
        log.info("faults cleared")

    async def reset(self) -> None:
        """Forget messages, submissions, inbound replies, webhooks and faults; keep accounts."""
        await self._cancel_tasks()
        self.store.clear_activity()
        self.faults.clear()
        self.limiter.reset()
        self.persist()
        log.info("simulator reset")
