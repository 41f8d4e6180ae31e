"""Two sites sharing one Microsoft 365 account (30 a minute): the SMTP server never sees the
account go faster than its rate, whatever the sites' ticks allow (send-now has no delay)."""

from __future__ import annotations

import itertools

import pytest

from tests.integration.email_gateway.conftest import EmailHarness, email_settings, ended, queued
from tests.support.waiting import wait_until

RATE_INTERVAL = 60 / 30  # seconds per email at 30 a minute
JITTER = RATE_INTERVAL  # one interval of slack for a send the event loop started late


@pytest.mark.slow
async def test_two_sites_on_one_account_share_its_rate(email: EmailHarness, smtp_servers) -> None:
    server = smtp_servers()
    shared = email_settings(server.port, preset="microsoft_365", username="front@smile.example")
    site_a = await email.make_site(shared)
    site_b = await email.make_site(shared)
    async with email.gateway() as gw:
        await email.submit(site_a, 5, to=lambda i: f"a{i}@example.org")
        await email.submit(site_b, 5, to=lambda i: f"b{i}@example.org")
        await wait_until(lambda: queued(gw, 10), timeout=20, message="queued")
        # Send-now on both sites at once: ticks with no spacing and a large budget.
        await email.tick(site_a, 1000, manual=True)
        await email.tick(site_b, 1000, manual=True)
        await wait_until(lambda: ended(email, 10), timeout=60, interval=0.2, message="all sent")
    arrivals = sorted(r.received_at for r in server.received)
    assert len(arrivals) == 10
    recipients = {r.rcpt_tos[0][0] for r in server.received}
    assert recipients == {"a", "b"}, "both sites sent through the account"
    # However arrivals jitter, k emails never arrive faster than the account's rate allows.
    for (i, first), (j, last) in itertools.combinations(enumerate(arrivals), 2):
        assert last - first >= (j - i) * RATE_INTERVAL - JITTER, (i, j, arrivals)
    assert arrivals[-1] - arrivals[0] >= 9 * RATE_INTERVAL - JITTER
