"""Who calls the JSON API and what they may reach, for every `/api/v1` router.

The caller is the principal of a bearer token (401 without one). A group or site the caller
may not see answers 404, never revealing that it exists; one they may see but not change
answers 403 naming their role.

(No `from __future__ import annotations`: FastAPI reads `principal`'s signature at runtime.)
"""

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.config.domain.aggregates import SiteState
from services.config.entrypoints.problems import AuthError
from services.config.handlers import ConfigHandlers, NotFound
from shared.bus import subjects
from shared.tokens import Principal, TokenRefused, TokenRegistry

# Declared as a security scheme (not a bare header parameter) so the OpenAPI document tells
# clients how to authenticate; `auto_error=False` keeps our own problem+json 401.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="An API token: `stg_...`")


class Access:
    """The caller and the groups they may see or administer. A router declares
    `Caller = Annotated[Principal, Depends(access.principal)]`."""

    def __init__(self, tokens: TokenRegistry) -> None:
        self.tokens = tokens

    async def principal(
        self,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Principal:
        """The token's principal, or 401."""
        if credentials is None:
            raise AuthError(401, "send 'Authorization: Bearer <token>'")
        try:
            return await self.tokens.check(credentials.credentials.strip())
        except TokenRefused as exc:
            raise AuthError(401, exc.message) from None

    @staticmethod
    def group(group_id: str, who: Principal) -> None:
        """404 unless `group_id` is the caller's group."""
        if who.group_id != group_id:
            raise AuthError(404, f"no group {group_id} you can see")

    @staticmethod
    def admin_of(group_id: str, who: Principal, refusal: str) -> None:
        """404 unless the caller's group, 403 (`refusal`) unless they administer it."""
        Access.group(group_id, who)
        if not who.administers_group(group_id):
            raise AuthError(403, refusal)


class SiteAccess(Access):
    """`Access`, plus the sites the caller may see or manage."""

    def __init__(self, tokens: TokenRegistry, handlers: ConfigHandlers) -> None:
        super().__init__(tokens)
        self.handlers = handlers

    async def lookup(self, site_id: str) -> SiteState:
        """The site, whoever may see it; 404 for a malformed or unknown id."""
        try:
            subjects.check_token(site_id, "site id")
            return await self.handlers.site(site_id)
        except (NotFound, subjects.InvalidToken):
            raise AuthError(404, f"no site {site_id} you can see") from None

    async def site_for(self, site_id: str, who: Principal) -> SiteState:
        """A site the caller may see, or 404."""
        site = await self.lookup(site_id)
        if not who.sees_site(site.group_id, site.site_id):
            raise AuthError(404, f"no site {site_id} you can see")
        return site

    async def managed(self, site_id: str, who: Principal, *, cannot: str) -> SiteState:
        """A site the caller may change; 404 if unseen, else 403 "your role (…) cannot
        `cannot`"."""
        site = await self.site_for(site_id, who)
        if not who.manages_site(site.group_id, site.site_id):
            raise AuthError(403, f"your role ({who.role}) cannot {cannot}")
        return site
