"""The gateway with a Esendex account, against the simulator's Esendex dialect."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from tests.integration.sms_gateway import dialect_scenarios as scenario
from tests.integration.sms_gateway.harness import Sim

KIND = "esendex"


async def test_receipts_and_replies_come_through_the_secured_webhooks(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    await scenario.receipts_and_replies_come_through_the_secret_path(
        nc, nats_url, database_url, tmp_path, sim, KIND
    )


async def test_webhooks_from_outside_the_allow_list_are_refused(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    await scenario.webhooks_from_outside_the_allow_list_are_refused(
        nc, nats_url, database_url, tmp_path, sim, KIND
    )


async def test_credits_run_out_then_resume_and_nothing_goes_twice_under_faults(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    await scenario.credits_run_out_then_resume_and_nothing_goes_twice_under_faults(
        nc, nats_url, database_url, tmp_path, sim, KIND
    )
