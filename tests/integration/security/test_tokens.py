"""API tokens may carry an expiry: refused from then on (401, saying so) by the API;
`stagger token issue --expires-in/--expires-at` sets it. (People sign in to the console with
staff accounts, not tokens: tests/integration/staff.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from shared.bus.topology import ACCESS
from shared.tokens import issue_token
from tests.integration.config.conftest import ConfigHarness, config  # noqa: F401
from tests.support.processes import run_cli
from tests.support.waiting import wait_until


async def _status(harness: ConfigHarness, token: str, group_id: str) -> httpx.Response:
    async with harness.client(token) as api:
        return await api.get(f"/api/v1/groups/{group_id}/sites")


async def test_an_expired_token_is_refused_with_the_reason(config: ConfigHarness) -> None:  # noqa: F811
    group_id = await config.create_group()
    soon = datetime.now(UTC) + timedelta(seconds=3)
    _, expiring = await issue_token(
        config.nc, group_id=group_id, role="group_admin", expires_at=soon
    )
    _, lasting = await issue_token(
        config.nc,
        group_id=group_id,
        role="group_admin",
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    assert (await _status(config, expiring, group_id)).status_code == 200

    async def refused() -> httpx.Response | None:
        answer = await _status(config, expiring, group_id)
        return answer if answer.status_code == 401 else None

    answer = await wait_until(refused, timeout=30, message="the token refused once expired")
    assert datetime.now(UTC) >= soon
    assert "expired" in answer.text
    assert expiring.split(".")[1] not in answer.text
    # A token with a later expiry, and a wrong secret for the expired one, are unaffected.
    assert (await _status(config, lasting, group_id)).status_code == 200
    wrong = await _status(config, expiring.split(".")[0] + ".not-the-secret", group_id)
    assert wrong.status_code == 401 and "expired" not in wrong.text


async def _cli(config: ConfigHarness, *args: str) -> tuple[int, str, str]:  # noqa: F811
    return await run_cli(config.env, "token", *args)


async def test_cli_issues_a_token_with_an_expiry(config: ConfigHarness) -> None:  # noqa: F811
    group_id = await config.create_group()
    code, out, err = await _cli(
        config, "issue", "--group", group_id, "--role", "auditor", "--expires-in", "30d"
    )
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert "valid until" in out
    assert (await _status(config, token, group_id)).status_code == 200
    code, out, _ = await _cli(config, "list", "--group", group_id)
    assert code == 0 and "expires=" in out and "active" in out

    before = (await config.nc.jetstream().stream_info(ACCESS)).state.messages
    for option, value, says in (
        ("--expires-at", "2001-01-01T00:00:00", "not in the future"),
        ("--expires-at", "next tuesday", "not an ISO 8601 instant"),
        ("--expires-in", "5 fortnights", "not a duration"),
    ):
        code, _, err = await _cli(
            config, "issue", "--group", group_id, "--role", "auditor", option, value
        )
        assert code == 2, (option, value)
        assert option in err and says in err
    # Nothing was issued for a refused option.
    assert (await config.nc.jetstream().stream_info(ACCESS)).state.messages == before
