"""The JSON API's request and response bodies, and how aggregates and outcomes become them."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.config.domain.aggregates import SiteState
from services.config.handlers import (
    Outcome,
    redact,
)
from shared.bus import subjects

Channel = Literal["sms", "email"]


class SiteOut(BaseModel):
    """A site with its effective settings (secrets masked)."""

    site_id: str
    group_id: str
    name: str
    version: int
    settings: dict[str, Any]
    overridden: list[str]
    inherited: list[str]
    warnings: list[dict[str, str]]


class GroupOut(BaseModel):
    """A group with its defaults (secrets masked)."""

    group_id: str
    name: str
    version: int
    defaults: dict[str, Any]


class OutcomeOut(BaseModel):
    """The result of a change: the new version and what changed."""

    version: int
    changed: bool
    changes: list[dict[str, Any]]
    warnings: list[dict[str, str]] = []
    sites_updated: list[str] = []


class SitePatch(BaseModel):
    """Override some settings and/or go back to inheriting others."""

    set: dict[str, Any] = Field(default_factory=dict, description="Nested partial settings.")
    inherit: list[str] = Field(default_factory=list, description="Dotted paths to inherit again.")
    note: str | None = Field(default=None, max_length=500, description="Why, for the audit log.")


class GroupPatch(BaseModel):
    """Change some group defaults."""

    set: dict[str, Any] = Field(description="Nested partial settings.")


class SiteCreate(BaseModel):
    """A new site."""

    # The pattern is documented, not enforced by pydantic: `subjects.check_token` checks it
    # in the route with a message a person can act on.
    site_id: str = Field(
        description="Lowercase letters, digits and '-', unique in Stagger.",
        json_schema_extra={"pattern": subjects._TOKEN.pattern},
    )
    name: str = Field(min_length=1, max_length=120)
    timezone: str | None = Field(default=None, description="IANA zone; default: the group's.")
    region: Literal["UK", "AU", "NZ", "US", "other"] | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="Overrides, nested.")


class SendNowIn(BaseModel):
    """Send everything queued now, ignoring the delay (not opt-outs, caps or credits)."""

    channel: Channel
    reason: str = Field(default="", max_length=500)


class SubmissionOut(BaseModel):
    """Accepted messages and when they will go."""

    accepted: int
    batch_id: str
    messages: list[dict[str, Any]]
    credits_needed: float | None = None
    credits: dict[str, Any] | None = Field(
        default=None,
        description="SMS: how many the account's latest reported balance pays for, and a "
        "warning when it runs out first (the submission is accepted either way).",
    )
    forecast: dict[str, Any] | None = None


def site_out(site: SiteState) -> SiteOut:
    """Response form of a site."""
    from shared.domain.site_settings import warnings

    return SiteOut(
        site_id=site.site_id,
        group_id=site.group_id,
        name=site.name,
        version=site.version,
        settings=redact(site.settings.model_dump(mode="json")),
        overridden=sorted(site.overrides),
        inherited=site.inherited_paths(),
        warnings=warnings(site.settings),
    )


def outcome_out(outcome: Outcome, sites_updated: list[str] | None = None) -> OutcomeOut:
    return OutcomeOut(
        version=outcome.version,
        changed=outcome.changed,
        changes=outcome.changes,
        warnings=outcome.warnings,
        sites_updated=sites_updated or [],
    )
