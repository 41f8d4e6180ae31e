"""Consent categories through the API: submission names or defaults them, the group sets its
list (sites cannot), and staff record per-category opt-outs where the region allows."""

from __future__ import annotations

from shared.bus.topology import OPTOUTS
from shared.eventstore import EventStore
from tests.integration.config.conftest import ConfigHarness
from tests.integration.config.test_submission import sms_site


def fields(response: object) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]  # type: ignore[attr-defined]


async def test_submission_defaults_or_checks_the_category_against_the_groups_list(
    config: ConfigHarness,
) -> None:
    group_id = await config.create_group("Consent")
    admin = await config.token(group_id, "group_admin")
    site_id = (await config.create_site(admin, group_id, settings=sms_site(group_id)))["site_id"]
    url = f"/api/v1/sites/{site_id}/messages"
    async with config.client(admin) as client:
        ok = await client.post(
            url,
            json={
                "channel": "sms",
                "messages": [
                    {"to": "07700 900001", "body": "Recall due", "category": "recall"},
                    {"to": "07700 900002", "body": "See you Monday", "category": "reminder"},
                    {"to": "07700 900003", "body": "Hi", "consent_category": "marketing"},
                ],
            },
        )
        bad = await client.post(
            url,
            json={
                "channel": "sms",
                "messages": [{"to": "07700 900004", "body": "Hi", "consent_category": "promo"}],
            },
        )
        site = await client.get(f"/api/v1/sites/{site_id}")
        site_override = await client.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"set": {"consent": {"categories": ["service"]}}},
            headers={"If-Match": site.headers["ETag"]},
        )
        group = await client.get(f"/api/v1/groups/{group_id}")
        group_change = await client.patch(
            f"/api/v1/groups/{group_id}/defaults",
            json={"set": {"consent": {"categories": ["service", "marketing", "newsletter"]}}},
            headers={"If-Match": group.headers["ETag"]},
        )
        newsletter = await client.post(
            url,
            json={
                "channel": "sms",
                "messages": [
                    {"to": "07700 900005", "body": "News", "consent_category": "newsletter"}
                ],
            },
        )
    assert ok.status_code == 202, ok.text
    assert [m["consent_category"] for m in ok.json()["messages"]] == [
        "marketing",
        "service",
        "marketing",
    ]
    assert bad.status_code == 422 and fields(bad) == ["messages[0].consent_category"]
    assert "service, marketing" in bad.text
    assert site_override.status_code == 422, site_override.text
    assert "consent.categories" in fields(site_override)
    assert group_change.status_code == 200, group_change.text
    assert newsletter.status_code == 202, newsletter.text


async def test_staff_opt_outs_name_a_category_where_the_region_allows(
    config: ConfigHarness,
) -> None:
    group_id = await config.create_group("Opt-outs")
    admin = await config.token(group_id, "group_admin")
    uk = (await config.create_site(admin, group_id, settings=sms_site(group_id)))["site_id"]
    us_group = await config.create_group("US", profile={"region": "US"})
    us_admin = await config.token(us_group, "group_admin")
    async with config.client(admin) as client:
        marketing = await client.post(
            f"/api/v1/groups/{group_id}/optouts",
            json={"channel": "sms", "recipient": "07700 900010", "category": "marketing",
                  "site_id": uk},
        )  # fmt: skip
        unknown = await client.post(
            f"/api/v1/groups/{group_id}/optouts",
            json={"channel": "sms", "recipient": "07700 900010", "category": "promo"},
        )
        back = await client.post(
            f"/api/v1/groups/{group_id}/optins",
            json={"channel": "sms", "recipient": "07700 900010"},
        )
        other_group = await client.post(
            f"/api/v1/groups/{us_group}/optouts",
            json={"channel": "sms", "recipient": "+12025550100"},
        )
    async with config.client(us_admin) as client:
        widened = await client.post(
            f"/api/v1/groups/{us_group}/optouts",
            json={"channel": "sms", "recipient": "+12025550100", "category": "marketing"},
        )
    assert marketing.status_code == 201, marketing.text
    assert marketing.json()["covers"] == "marketing"
    # Named by a masked form and the salted hash, never in clear (docs/privacy.md).
    assert marketing.json()["recipient"] == "+44•••••••010"
    assert len(marketing.json()["recipient_tag"]) == 32
    assert unknown.status_code == 422 and fields(unknown) == ["category"]
    assert back.status_code == 201 and back.json()["covers"] == "every category"
    assert other_group.status_code == 404
    assert widened.status_code == 201 and widened.json()["covers"] == "every category"
    recorded = [e async for e in EventStore(config.nc, OPTOUTS).replay()]
    assert [(e.type, e.data.group_id, e.data.category, e.actor[:6]) for e in recorded] == [  # type: ignore[attr-defined]
        ("stagger.optout.opted_out", group_id, "marketing", "token:"),
        ("stagger.optout.opted_in", group_id, None, "token:"),
        ("stagger.optout.opted_out", us_group, None, "token:"),
    ]
    # Recorded sealed under the patient's key, with their salted hash.
    assert all(e.data.recipient.startswith("pd1:") for e in recorded)  # type: ignore[attr-defined]
    assert {e.data.recipient_tag for e in recorded[:2]} == {marketing.json()["recipient_tag"]}  # type: ignore[attr-defined]
