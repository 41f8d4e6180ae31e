"""Alerts end to end: credits run out at the SMS provider simulator → exactly one alert email
per group admin in an aiosmtpd sink; after the top-up exactly one "cleared" each — across a
restart of the config service in between (the alert state is stored, not remembered).

Real parts: the session's nats-server, SQLite, the simulator process, an SMS gateway, the
config service as a process (its alert projections and notifier) and an SMTP sink.
"""

from __future__ import annotations

import secrets
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.config.adapters.alert_tables import alert_outbox
from services.sms_gateway.adapters.providers.catalogue import TOPUP_PAGES
from shared.bus.topology import ALERTS, AUDIT
from shared.db.engine import create_engine, session_factory
from shared.events.schemas.alerts import AlertCleared, AlertRaised
from tests.integration.sms_gateway.dialect_scenarios import SENDER, ours
from tests.integration.sms_gateway.harness import (
    BOX,
    KEY,
    AccountTicks,
    Sim,
    account_of,
    events,
    gateway_running,
    handlers,
    make_site,
    midday_zone,
    provider_events,
    submit,
    wait_terminal,
)
from tests.support.processes import service_env, start_service
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.staff import seed_staff
from tests.support.waiting import wait_until


def mails(sink: object, subject_start: str) -> list[EmailMessage]:
    return [m for m in sink.parsed() if str(m["Subject"]).startswith(subject_start)]  # type: ignore[attr-defined]


async def outbox_done(config_db: str) -> bool:
    """True once the notifier has published and emailed every queued alert event."""
    engine = create_engine(config_db)
    try:
        async with session_factory(engine)() as session:
            rows = (
                await session.execute(
                    sa.select(alert_outbox.c.event_id).where(
                        alert_outbox.c.emailed_at.is_(None) | alert_outbox.c.published_at.is_(None)
                    )
                )
            ).all()
            total = (
                await session.execute(sa.select(sa.func.count()).select_from(alert_outbox))
            ).scalar()
    finally:
        await engine.dispose()
    return bool(total) and not rows


async def test_credits_run_out_one_alert_per_admin_then_one_cleared_after_the_top_up(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    sim: Sim,
    smtp_servers,  # noqa: F811
) -> None:
    sink = smtp_servers()
    account = await sim.account(credits=6)
    # Threshold 0: running out is the only condition here (no low-credit alert beside it).
    site = await make_site(nc, sim, account, rate=50, sms={"low_credit_threshold": 0})
    other = await make_site(nc, sim, await sim.account(credits=100))
    var_dir = tmp_path / "config"
    env = service_env(
        nats_url,
        var_dir,
        extra={
            "STAGGER_SECRET_KEY": KEY,
            "STAGGER_ALERT_SMTP_HOST": "127.0.0.1",
            "STAGGER_ALERT_SMTP_PORT": str(sink.port),
        },
    )
    config_db = f"sqlite+aiosqlite:///{var_dir / 'config.db'}"
    config = start_service("config", env)
    try:
        admins = [await seed_staff(env, BOX, site["group"], "group_admin") for _ in range(2)]
        await seed_staff(env, BOX, site["group"], "site_manager", [site["site"]])
        await seed_staff(env, BOX, site["group"], "group_admin", status="disabled")
        await seed_staff(env, BOX, other["group"], "group_admin")
        expected = sorted(a.email for a in admins)

        async with gateway_running(nats_url, database_url, tmp_path) as _gw:
            ids = await submit(nc, site["site"], 15)
            async with AccountTicks(nc, site["account"], [site["site"]], rate=50):
                await wait_until(
                    lambda: provider_events(nc, "stagger.credits.sending_held"),
                    timeout=60,
                    message="the account held",
                )
                await wait_until(
                    lambda: len(mails(sink, "Alert:")) >= 2,
                    timeout=60,
                    message="an alert email to each group admin",
                )
                await wait_until(lambda: outbox_done(config_db), timeout=30, message="outbox done")

                # A restart of the config service must not tell anyone again.
                config.stop()
                config = start_service("config", env)

                async with sim.client() as http:
                    response = await http.post(
                        "/v1/topup",
                        json={"amount": 100},
                        headers={"Authorization": f"Bearer {account.api_key}"},
                    )
                assert response.status_code == 200, response.text
                await wait_terminal(nc, ids, timeout=90)
                await wait_until(
                    lambda: len(mails(sink, "Cleared:")) >= 2,
                    timeout=60,
                    message="a cleared email to each group admin",
                )
                await wait_until(lambda: outbox_done(config_db), timeout=30, message="outbox done")
    finally:
        config.stop()

    raised, cleared = mails(sink, "Alert:"), mails(sink, "Cleared:")
    assert sorted(str(m["To"]) for m in raised) == expected
    assert sorted(str(m["To"]) for m in cleared) == expected
    assert len(sink.parsed()) == 4, [str(m["Subject"]) for m in sink.parsed()]
    assert all("SMS sending is held" in str(m["Subject"]) for m in raised + cleared)
    body = raised[0].get_content()
    assert site["account"] in body and "no credits" in body
    for message in sink.parsed():
        text = message.as_string()
        assert account.api_key not in text and "enc:v1:" not in text

    # Auditors can replay them: one raised and one cleared event for the same alert.
    alert_events = await events(nc, ALERTS)
    kinds = Counter(type(e.data).__name__ for e in alert_events)
    assert kinds == Counter({"AlertRaised": 1, "AlertCleared": 1}), kinds
    up = next(e.data for e in alert_events if isinstance(e.data, AlertRaised))
    down = next(e.data for e in alert_events if isinstance(e.data, AlertCleared))
    assert up.alert_id == down.alert_id and up.condition == "sms_held"
    assert up.group_id == site["group"] and up.key == site["account"]
    assert all(e.group_id == site["group"] for e in alert_events)

    # …and the audit trail's stream holds them too (AUDIT sources ALERTS).
    async def in_audit() -> bool:
        found = await events(nc, AUDIT, "alerts.>")
        return sorted(e.id for e in found) == sorted(e.id for e in alert_events)

    await wait_until(in_audit, timeout=30, message="the alerts in AUDIT")


async def test_a_provider_without_a_top_up_call_sends_its_top_up_page(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    sim: Sim,
    smtp_servers,  # noqa: F811
) -> None:
    """ClickSend (the simulator's dialect) has no top-up call: besides "held", the admin is
    asked to buy credit at ClickSend's page; both clear once the credit is there."""
    sink = smtp_servers()
    kind = "clicksend"
    account = await sim.account(credits=4, dialect=kind)
    group, site_id = f"g-{secrets.token_hex(3)}", f"s-{secrets.token_hex(3)}"
    h = handlers(nc)
    await h.create_group(group, group, {}, actor="test")
    provider = {
        "kind": kind,
        "account_id": account.name,
        "secret": account.api_key,
        "base_url": f"{sim.url}/{kind}",
        "rate_per_second": 50,
        "webhook_secret": secrets.token_urlsafe(24),
    }
    await h.create_site(
        group,
        site_id,
        {"name": site_id, "timezone": midday_zone()},
        {
            "sms": {
                "provider": provider,
                "sender_id": SENDER,
                "mode": "immediate",
                "low_credit_threshold": 0,
            }
        },
        actor="test",
    )
    sms_account = account_of(kind, account.name, f"{sim.url}/{kind}", group)
    var_dir = tmp_path / "config"
    env = service_env(
        nats_url,
        var_dir,
        extra={
            "STAGGER_SECRET_KEY": KEY,
            "STAGGER_ALERT_SMTP_HOST": "127.0.0.1",
            "STAGGER_ALERT_SMTP_PORT": str(sink.port),
        },
    )
    config = start_service("config", env)
    try:
        admin = await seed_staff(env, BOX, group, "group_admin")
        async with gateway_running(nats_url, database_url, tmp_path):
            ids = await submit(nc, site_id, 8)
            async with AccountTicks(nc, sms_account, [site_id], rate=50):
                await wait_until(
                    lambda: len(mails(sink, "Alert:")) >= 2,
                    timeout=60,
                    message="held and top-up alerts",
                )
                await sim.update(account, credits=100)  # bought in the provider's dashboard
                await wait_terminal(nc, ids, timeout=90)
                await wait_until(
                    lambda: len(mails(sink, "Cleared:")) >= 2,
                    timeout=60,
                    message="both cleared",
                )
    finally:
        config.stop()
    assert await ours(nc, "stagger.credits.topup_needed", sms_account)
    subjects = Counter(str(m["Subject"]) for m in sink.parsed())
    assert subjects == Counter(
        {
            f"Alert: SMS sending is held ({group})": 1,
            f"Alert: SMS credit must be bought ({group})": 1,
            f"Cleared: SMS sending is held ({group})": 1,
            f"Cleared: SMS credit must be bought ({group})": 1,
        }
    ), subjects
    assert {str(m["To"]) for m in sink.parsed()} == {admin.email}
    [topup] = [m for m in mails(sink, "Alert:") if "bought" in str(m["Subject"])]
    assert f"Buy credit here: {TOPUP_PAGES[kind]}" in topup.get_content()
    for message in sink.parsed():
        assert account.api_key not in message.as_string()
