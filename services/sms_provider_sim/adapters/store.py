"""In-memory state: accounts, messages, submissions, inbound replies, webhook attempts.

Every method is synchronous. The simulator runs on one event loop, so a check followed by a
change inside one method (such as "is this reference new? then store it") cannot interleave
with another request: that is what makes idempotency hold under concurrent duplicates,
without any lock.
"""

from __future__ import annotations

from typing import Any

from services.sms_provider_sim.domain.models import (
    Account,
    InboundMessage,
    Message,
    Submission,
    WebhookAttempt,
)

SNAPSHOT_VERSION = 1


class Store:
    """Everything the simulator knows."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._by_key: dict[str, str] = {}
        self.messages: dict[str, Message] = {}
        self._by_reference: dict[tuple[str, str], str] = {}
        self.submissions: list[Submission] = []
        self.inbound: list[InboundMessage] = []
        self.webhook_attempts: list[WebhookAttempt] = []

    # accounts

    def account_for_key(self, api_key: str) -> Account | None:
        """The account an API key belongs to."""
        name = self._by_key.get(api_key)
        return self.accounts.get(name) if name else None

    def key_owner(self, api_key: str) -> str | None:
        """Name of the account using `api_key`, if any."""
        return self._by_key.get(api_key)

    def put_account(self, account: Account) -> None:
        """Add or replace an account, keeping the key index in step."""
        old = self.accounts.get(account.name)
        if old is not None and self._by_key.get(old.api_key) == old.name:
            del self._by_key[old.api_key]
        self.accounts[account.name] = account
        self._by_key[account.api_key] = account.name

    def update_account(self, account: Account, changes: dict[str, Any]) -> None:
        """Change a stored account in place, keeping the key index in step."""
        old_key = account.api_key
        for name, value in changes.items():
            setattr(account, name, value)
        if account.api_key != old_key:
            if self._by_key.get(old_key) == account.name:
                del self._by_key[old_key]
            self._by_key[account.api_key] = account.name

    # messages

    def find_by_reference(self, account: str, reference: str) -> Message | None:
        """The account's message with this reference (our message id)."""
        message_id = self._by_reference.get((account, reference))
        return self.messages.get(message_id) if message_id else None

    def add_message(self, message: Message) -> None:
        """Store a new message (the caller has checked that the reference is new)."""
        self.messages[message.id] = message
        self._by_reference[(message.account, message.reference)] = message.id

    def clear_activity(self) -> None:
        """Drop messages, submissions, inbound replies and webhook attempts; keep accounts."""
        self.messages.clear()
        self._by_reference.clear()
        self.submissions.clear()
        self.inbound.clear()
        self.webhook_attempts.clear()

    # persistence

    def snapshot(self) -> dict[str, Any]:
        """Copies of what survives a restart, safe to serialise on another thread.

        Messages are copied shallowly (their fields are immutable values, and `response` is
        never changed after creation); accounts deeply (their top-up list grows).
        """
        return {
            "accounts": [a.model_copy(deep=True) for a in self.accounts.values()],
            "messages": [m.model_copy() for m in self.messages.values()],
        }

    def load(self, data: dict[str, Any]) -> None:
        """Replace accounts and messages with those of a saved snapshot."""
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported state file version {data.get('version')!r}")
        self.accounts.clear()
        self._by_key.clear()
        self.clear_activity()
        for raw in data.get("accounts", []):
            self.put_account(Account.model_validate(raw))
        for raw in data.get("messages", []):
            self.add_message(Message.model_validate(raw))


def serialise(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The JSON document for a snapshot (runs on a worker thread)."""
    return {
        "version": SNAPSHOT_VERSION,
        "accounts": [a.model_dump(mode="json") for a in snapshot["accounts"]],
        "messages": [m.model_dump(mode="json") for m in snapshot["messages"]],
    }
