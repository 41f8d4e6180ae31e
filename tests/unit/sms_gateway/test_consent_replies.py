"""Replies that end one consent category ("STOP RECALLS"), and where the region widens them."""

from __future__ import annotations

from pathlib import Path

from services.sms_gateway.handlers.reply import classify
from shared.domain.site_settings import SiteSettings
from shared.sites import Site
from tests.unit.sms_gateway.handler_kit import GROUP, gateway_tables
from tests.unit.sms_gateway.test_reply_handler import PATIENT, Kit, inbound


def _site(region: str, **consent: object) -> Site:
    settings = SiteSettings.model_validate(
        {"profile": {"region": region}, "consent": consent}
        if consent
        else {"profile": {"region": region}}
    )
    return Site(GROUP, "s-1", settings, 1)


def test_a_category_phrase_ends_that_category_where_the_region_allows() -> None:
    for region in ("UK", "AU", "NZ"):
        verdict, category = classify(_site(region), "Stop recalls.")
        assert (verdict.kind, verdict.keyword, category) == ("optout", "STOP RECALLS", "marketing")
    verdict, category = classify(_site("US"), "stop recalls")
    assert (verdict.kind, category) == ("optout", None), "widened to every category in the US"


def test_stop_and_start_cover_every_category_and_other_text_is_no_opt_out() -> None:
    assert [classify(_site("UK"), t)[1] for t in ("STOP", "START")] == [None, None]
    assert classify(_site("UK"), "STOP")[0].kind == "optout"
    verdict, category = classify(_site("UK"), "please stop recalls for now")
    assert (verdict.kind, category) == ("unmatched", None)


def test_a_group_sets_its_own_categories_and_phrases() -> None:
    site = _site(
        "UK",
        categories=["service", "newsletter"],
        optout_phrases={"newsletter": ["NO NEWS"]},
    )
    assert classify(site, "no news")[1] == "newsletter"
    assert classify(site, "stop recalls")[0].kind == "unmatched", "no marketing category here"


async def test_stop_recalls_suppresses_marketing_only(tmp_path: Path) -> None:
    async with gateway_tables(tmp_path) as sessions:
        kit = Kit(sessions)
        assert await kit.handler.handle(inbound("in-1", "STOP RECALLS"), "simulator") == "optout"
        assert kit.suppression.is_suppressed(GROUP, "sms", PATIENT, "marketing")
        assert not kit.suppression.is_suppressed(GROUP, "sms", PATIENT, "service")
        assert kit.queue.suppressed_categories == ["marketing"]
        await kit.handler.handle(inbound("in-2", "STOP"), "simulator")
        assert kit.suppression.is_suppressed(GROUP, "sms", PATIENT, "service")
        await kit.handler.handle(inbound("in-3", "START"), "simulator")
        assert not kit.suppression.is_suppressed(GROUP, "sms", PATIENT, "marketing")
        assert not kit.suppression.is_suppressed(GROUP, "sms", PATIENT, "service")
