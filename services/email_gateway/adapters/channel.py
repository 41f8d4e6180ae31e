"""The email channel for the shared delivery engine: SMTP out, IMAP in, Sent-folder
reconciliation.

Never twice, never lost (the engine's ledger does the bookkeeping; this is the email side):

- A send that fails before the message data went out is retried (4xx, lost connection) or
  fails with the server's reply (5xx).
- A send that broke off *after* the data went out may have been delivered. The gateway looks
  for our Message-ID in the account's Sent folder (`email.imap.sent_folder`; Microsoft 365 and
  Gmail file SMTP-submitted mail there): found → `sent` (reconciled); absent → sent again.
- After a crash, the engine hands every message whose lease ran out to `reconcile`, which asks
  the Sent folder the same question.
- With no Sent folder configured the answer is "resend": at-least-once, with the same
  Message-ID, which receivers such as Gmail use to drop the duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from services.email_gateway.adapters.account_health import AccountHealth
from services.email_gateway.adapters.composer import ComposeError, compose, message_id_header
from services.email_gateway.adapters.graph.client import GraphMail, GraphUnavailable
from services.email_gateway.adapters.graph.receiver import GraphReceiver
from services.email_gateway.adapters.imap import ImapSession, SessionCache
from services.email_gateway.adapters.imap_errors import ImapFailure
from services.email_gateway.adapters.mailbox import imap_endpoint
from services.email_gateway.adapters.receiving import Receiver
from services.email_gateway.adapters.smtp import SmtpAccount, SmtpOutcome, SmtpPool
from services.email_gateway.config import EmailGatewayConfig
from services.email_gateway.domain.delivery import after_attempt, after_looking
from shared.dispatch.adapter import SEND, AccountLimitsSpec, Reconciled, SendResult, Verdict
from shared.dispatch.queue import Claimed
from shared.domain.accounts import email_account_id
from shared.domain.consent import message_category
from shared.email_auth.credentials import CredentialError, open_credentials
from shared.email_auth.login import OAuthLogin
from shared.email_auth.provider import TokenProvider, TokenRefused, TokenUnavailable
from shared.events.schemas.messages import wants_unsubscribe
from shared.events.schemas.ticks import TickIssued
from shared.secrets import SecretBox, SecretKeyError
from shared.sites import Site
from shared.suppression import SuppressionList
from shared.unsubscribe import UnsubscribeTokens

log = logging.getLogger(__name__)
RESUME_CHECK_SECONDS = 30.0
"""How often a held OAuth account whose settings did not change asks for a token again."""


@dataclass(frozen=True)
class _Derived:
    account: str | None
    limits: AccountLimitsSpec
    smtp: SmtpAccount | SecretKeyError | CredentialError | None


class EmailAdapter:
    """SMTP/IMAP for `DispatchEngine`."""

    channel: Literal["sms", "email"] = "email"

    def __init__(
        self,
        *,
        settings: EmailGatewayConfig,
        public_url: str,
        box: SecretBox,
        tokens: UnsubscribeTokens,
        pool: SmtpPool,
        sent_sessions: SessionCache,
        health: AccountHealth,
        suppression: SuppressionList,
        receiver: Receiver,
        token_provider: TokenProvider | None = None,
        graph: GraphMail | None = None,
    ) -> None:
        self.settings = settings
        self.public_url = public_url
        self.box = box
        self.tokens = tokens
        self.pool = pool
        self.sent_sessions = sent_sessions
        self.health = health
        self.suppression = suppression
        self.receiver = receiver
        self.token_provider = token_provider or TokenProvider()
        self.graph = graph or GraphMail(timeout=settings.smtp_timeout_seconds)
        self.graph_receiver = GraphReceiver(receiver, self.graph, receiver.db)
        self._per_site: dict[tuple[str, int], _Derived] = {}
        self._resume_checked: dict[str, tuple[str, float]] = {}
        self._imap_held: dict[str, tuple[str, float]] = {}

    # --- accounts and limits -------------------------------------------------------------

    def _derived(self, site: Site) -> _Derived:
        """What the engine asks about a site on every message, computed once per settings
        version (account ids are hashes; passwords are decrypted)."""
        key = (site.site_id, site.version)
        found = self._per_site.get(key)
        if found is not None:
            return found
        email = site.settings.email
        account = email_account_id(email, site.group_id) if email.address else None
        hard = email.hard_limits()
        per_minute = hard["per_minute"]
        limits = AccountLimitsSpec(
            interval=timedelta(seconds=60.0 / per_minute) if per_minute else None,
            burst=1,
            daily_cap=hard["per_day"],
        )
        smtp: SmtpAccount | SecretKeyError | CredentialError | None = None
        if account is not None and email.smtp.host is not None:
            try:
                oauth = None
                if email.sign_in.is_oauth:  # issue 19 hook: OAuth 2.0 sign-in
                    default_user = email.smtp.username or email.address or ""
                    graph = email.transport == "graph"
                    oauth = OAuthLogin(
                        open_credentials(
                            account, email.sign_in, default_user, self.box, graph=graph
                        ),
                        self.token_provider,
                    )
                smtp = SmtpAccount(
                    account=account,
                    host=email.smtp.host,
                    port=email.smtp.port,
                    security=email.smtp.security,
                    username=email.smtp.username,
                    password=None
                    if oauth is not None or not email.smtp.password
                    else self.box.open(email.smtp.password),
                    oauth=oauth,
                )
            except (SecretKeyError, CredentialError) as exc:
                smtp = exc
        found = _Derived(account, limits, smtp)
        if len(self._per_site) > 10_000:
            self._per_site.clear()
        self._per_site[key] = found
        return found

    def account_for(self, site: Site) -> str | None:
        """The SMTP account (None: email disabled or no server/address configured)."""
        return self._derived(site).account

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        """The provider's hard limits (e.g. Microsoft 365: 30 a minute, 10,000 a day) and the
        site's daily cap; the per-minute *delay* is the ticks' job, not a hard limit."""
        return self._derived(site).limits

    def failover(self, site: Site) -> Site | None:
        """No standby account for email: a held SMTP account waits."""
        return None

    def smtp_account(self, site: Site) -> SmtpAccount:
        """The site's SMTP server with its password opened (raises SecretKeyError)."""
        smtp = self._derived(site).smtp
        if isinstance(smtp, SecretKeyError | CredentialError):
            raise smtp
        assert smtp is not None
        return smtp

    # --- before sending ------------------------------------------------------------------

    async def check(self, claimed: Claimed, site: Site, now: datetime) -> Verdict:
        """Opt-outs; manual mode waits for a send-now."""
        category = message_category(
            claimed.message.consent_category,
            claimed.message.category,
            site.settings.consent.categories,
        )
        if self.suppression.is_suppressed(
            claimed.group_id, "email", claimed.recipient_key, category
        ):
            return Verdict(
                "suppress", f"the recipient unsubscribed from this group's {category} email"
            )
        manual = claimed.release is not None and claimed.release.manual
        if site.settings.email.mode == "manual" and not manual:
            return Verdict("defer", "manual mode: waits for send-now")
        return SEND

    # --- sending -------------------------------------------------------------------------

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        """One SMTP transaction for one message."""
        email = site.settings.email
        try:
            account = self.smtp_account(site)
        except SecretKeyError as exc:
            return SendResult("retry", error=f"cannot open the SMTP password: {exc}")
        except CredentialError as exc:
            return SendResult("hold", error=f"email sign-in settings: {exc}")
        unsubscribe = None
        message = claimed.message
        if wants_unsubscribe(message) or "{{unsubscribe_url}}" in (
            message.body + (message.html or "")
        ):
            unsubscribe = self.tokens.url(self.public_url, claimed.group_id, claimed.recipient)
        try:
            composed = compose(
                message,
                from_address=email.address or "",
                display_name=email.display_name,
                unsubscribe_url=unsubscribe,
            )
        except ComposeError as exc:
            return SendResult("failed", error=str(exc))
        if email.transport == "graph":  # issue 19 hook: Microsoft Graph sendMail
            outcome = await self._graph_send(account, composed, site)
        else:
            outcome = await self.pool.transaction(account, composed)
        await self._note(account.account, outcome, site)
        header = composed.message_id_header
        state = after_attempt(outcome.kind)
        if state == "sent":
            return SendResult("sent", provider_message_id=header, provider_response=outcome.reply)
        if state == "look_in_sent_folder":
            return await self._settle_ambiguous(claimed, site, header, outcome)
        if state == "hold":
            return SendResult("hold", error=outcome.reply)
        return SendResult(
            state,
            error=outcome.reply,
            provider_response=outcome.reply,
            retry_after=outcome.retry_after,
        )

    async def _settle_ambiguous(
        self, claimed: Claimed, site: Site, header: str, outcome: SmtpOutcome
    ) -> SendResult:
        if not self._can_check_sent(site):
            return SendResult(
                "retry",
                error=f"{outcome.reply}; no Sent folder to check, so it is sent again with the "
                "same Message-ID",
            )
        await asyncio.sleep(self.settings.reconcile_grace_seconds)
        try:
            found = await self._in_sent_folder(claimed, site)
        except (ImapFailure, SecretKeyError, CredentialError, GraphUnavailable) as exc:
            return SendResult(
                "retry",
                error=f"{outcome.reply}; the Sent folder could not be checked ({exc}), so it is "
                "sent again with the same Message-ID",
            )
        if after_looking(found) == "sent":
            return SendResult("sent", provider_message_id=header, provider_response=outcome.reply)
        return SendResult("retry", error=f"{outcome.reply}; not in the Sent folder")

    async def _note(self, account: str, outcome: SmtpOutcome, site: Site) -> None:
        try:
            if outcome.kind == "sent":
                await self.health.record(
                    account, ok=True, stage="send", group_id=site.group_id, site_id=site.site_id
                )
            elif outcome.account_problem:
                await self.health.record(
                    account,
                    ok=False,
                    stage=outcome.stage,
                    error=outcome.reply,
                    code=outcome.code,
                    group_id=site.group_id,
                    site_id=site.site_id,
                )
        except Exception:
            log.exception("could not record the account's status")

    # --- after a crash -------------------------------------------------------------------

    async def _graph_send(self, account: SmtpAccount, composed: Any, site: Site) -> SmtpOutcome:
        if account.oauth is None:
            return SmtpOutcome(
                "hold", "login", "the Graph transport needs the microsoft_365 sign-in method"
            )
        user = account.oauth.credentials.user
        url = site.settings.email.sign_in.graph_url
        return await self.graph.send(account.oauth, url, user, composed.data)

    def _can_check_sent(self, site: Site) -> bool:
        if site.settings.email.transport == "graph":
            return site.settings.email.sign_in.method == "microsoft_365"
        endpoint = imap_endpoint(site, self.box, self.token_provider)
        return bool(site.settings.email.imap.sent_folder) and endpoint is not None

    async def _in_sent_folder(self, claimed: Claimed, site: Site) -> bool:
        if site.settings.email.transport == "graph":  # issue 19: Sent Items through Graph
            oauth = self.smtp_account(site).oauth
            assert oauth is not None
            header = message_id_header(claimed.message_id, site.settings.email.address)
            url = site.settings.email.sign_in.graph_url
            return await self.graph.in_sent_items(oauth, url, oauth.credentials.user, header)
        endpoint = imap_endpoint(site, self.box, self.token_provider)
        folder = site.settings.email.imap.sent_folder
        assert endpoint is not None and folder is not None
        # Search by "<id@" so a change of the site's address (the domain part) does not matter.
        fragment = message_id_header(claimed.message_id, None).split("@", 1)[0] + "@"

        def search(session: ImapSession) -> bool:
            return session.has_message_id(folder, fragment)

        return await self.sent_sessions.run(endpoint, search)

    async def reconcile(self, claimed: Claimed, site: Site) -> Reconciled:
        """Did an interrupted send reach the server? Asks the Sent folder (else: resend)."""
        header = message_id_header(claimed.message_id, site.settings.email.address)
        if not self._can_check_sent(site):
            return Reconciled(
                False, detail="no Sent folder configured: sent again (same Message-ID)"
            )
        found = await self._in_sent_folder(claimed, site)  # raises: the engine asks again later
        return Reconciled(found, provider_message_id=header if found else None)

    # --- the receive half ----------------------------------------------------------------

    async def on_tick(self, tick: TickIssued, sites: Sequence[Site]) -> None:
        """On a send/receive cycle (and send-now) read each site's mailbox."""
        if not tick.receive:
            return
        for site in sites:
            await self.receive(site)

    async def receive(self, site: Site) -> int:
        """Poll one site's mailbox if it receives email; returns messages recorded."""
        email = site.settings.email
        if not email.enabled or not email.imap.enabled:
            return 0
        if email.transport == "graph":  # issue 19 hook: the inbox through Graph delta
            return await self._graph_receive(site)
        endpoint = None
        try:
            endpoint = imap_endpoint(site, self.box, self.token_provider)
            if endpoint is None:
                return 0
            held = self._imap_held.get(endpoint.account)
            now = asyncio.get_running_loop().time()
            if (
                held is not None
                and held[0] == endpoint.fingerprint
                and now - held[1] < RESUME_CHECK_SECONDS
            ):
                return 0  # a refused OAuth sign-in waits for corrected settings
            count = await self.receiver.poll(site)
        except ImapFailure as failure:
            log.warning(
                "mailbox could not be read", extra={"site": site.site_id, "error": str(failure)}
            )
            if endpoint is not None and failure.held:
                now = asyncio.get_running_loop().time()
                self._imap_held[endpoint.account] = (endpoint.fingerprint, now)
            if endpoint is not None:
                await self.health.record(
                    endpoint.account,
                    ok=False,
                    stage="imap" if failure.stage == "imap" else failure.stage,
                    error=str(failure),
                    group_id=site.group_id,
                    site_id=site.site_id,
                )
            return 0
        except (SecretKeyError, CredentialError) as exc:
            log.error(
                "cannot open the IMAP credentials", extra={"site": site.site_id, "error": str(exc)}
            )
            return 0
        self._imap_held.pop(endpoint.account, None)
        await self.health.record(
            endpoint.account, ok=True, stage="imap", group_id=site.group_id, site_id=site.site_id
        )
        return count

    async def _graph_receive(self, site: Site) -> int:
        account = self.account_for(site)
        try:
            oauth = self.smtp_account(site).oauth
        except (SecretKeyError, CredentialError):
            oauth = None
        if account is None or oauth is None:
            return 0
        error: str | None = None
        try:
            count = await self.graph_receiver.poll(site, account, oauth)
        except GraphUnavailable as exc:
            error, count = str(exc), 0
            log.warning("mailbox could not be read", extra={"site": site.site_id, "error": error})
        await self.health.record(
            f"{account}-inbox",
            ok=error is None,
            stage="imap",
            error=error,
            group_id=site.group_id,
            site_id=site.site_id,
        )
        return count

    async def account_resumed(self, account: str, site: Site) -> bool:
        """A password account is never held (refused logins are retried with back-off). An
        OAuth account held for a refused token resumes once a fresh grant succeeds: at once
        after its settings changed, else at most every `RESUME_CHECK_SECONDS`."""
        try:
            smtp = self.smtp_account(site)
        except (SecretKeyError, CredentialError):
            return False
        if smtp.oauth is None:
            return False
        now = asyncio.get_running_loop().time()
        last = self._resume_checked.get(account)
        if (
            last is not None
            and last[0] == smtp.fingerprint
            and now - last[1] < RESUME_CHECK_SECONDS
        ):
            return False
        self._resume_checked[account] = (smtp.fingerprint, now)
        try:
            await smtp.oauth.token(fresh=True)
        except (TokenRefused, TokenUnavailable) as exc:
            log.info(
                "held email account still refused", extra={"account": account, "error": str(exc)}
            )
            return False
        self._resume_checked.pop(account, None)
        return True

    # --- settings page -------------------------------------------------------------------

    async def test_account(self, site: Site) -> dict[str, Any]:
        """The email Test (issue 19): sign in to SMTP, and to IMAP opening the inbox and the
        Sent folder when configured; sends nothing."""
        from services.email_gateway.adapters.email_test import email_test

        result = await email_test(
            self, site, tls=self.sent_sessions.tls, guard=self.sent_sessions.guard
        )
        account = self.account_for(site)
        smtp = result["smtp"]
        if account is not None and "stage" in smtp:
            await self.health.record(
                account,
                ok=smtp["ok"],
                stage="login" if smtp["ok"] else smtp["stage"],
                error=None if smtp["ok"] else smtp["detail"],
                code=smtp.get("code"),
                group_id=site.group_id,
                site_id=site.site_id,
            )
        return result
