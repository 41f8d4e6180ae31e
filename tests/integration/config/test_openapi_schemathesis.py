"""Schemathesis against the live config API: no 5xx, and every answer matches the OpenAPI.

The real config service runs as a process against the session's nats-server and SQLite (the
module's `config` fixture). Schemathesis loads `/openapi.json` from it and sends generated
requests to every operation, authenticated as a group admin. Generation is derandomised and
bounded, so a failure reproduces and the run stays short.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.config.conftest import ConfigHarness

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
]
CHANNELS_CONFIGURED = {
    "sms": {"provider": {"kind": "simulator", "account_id": "acct", "secret": "k"}},
    "email": {"address": "desk@practice.example", "smtp": {"host": "smtp.example.org"}},
}
# Per operation, in the fuzzing phase; the examples and coverage phases add their own few.
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
async def tenant(config: ConfigHarness) -> dict[str, str]:
    """A group with one site and an admin token: the caller for every generated request."""
    group_id = await config.create_group("Schemathesis Group")
    admin = await config.token(group_id, "group_admin")
    # Both channels configured, so valid submissions and provider tests get past the checks
    # that a channel is usable.
    site = await config.create_site(admin, group_id, settings=CHANNELS_CONFIGURED)
    return {"group_id": group_id, "site_id": site["site_id"], "admin": admin}


@pytest.fixture(scope="module")
def api_schema(config: ConfigHarness, tenant: dict[str, str]) -> BaseSchema:
    """The service's own OpenAPI document, loaded over HTTP, with the admin's token."""
    settings = SchemathesisConfig.from_dict(
        {
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "auth": {"openapi": {"bearer": {"bearer": tenant["admin"]}}},
        }
    )
    return schemathesis.openapi.from_url(f"{config.url}/openapi.json", config=settings)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # Schemathesis 4.32's lazy schemas read `node._nodeid`, which pytest 9.2 no longer sets
    # (the id lives in `node._id`); give it the value it expects.
    request.node._nodeid = request.node.nodeid


def current_etag(base_url: str, token: str, path: str) -> str | None:
    """The ETag of the group or site a write path belongs to (None if it is neither)."""
    parts = path.split("/")
    if len(parts) < 5 or parts[3] not in ("groups", "sites"):
        return None
    response = httpx.get(
        f"{base_url}/api/v1/{parts[3]}/{parts[4]}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.headers.get("ETag") if response.status_code == 200 else None


def aim_at_tenant(case: Case[Any], tenant: dict[str, str], base_url: str) -> None:
    """Point a valid (positive) case at the tenant's real group and site, with a fresh version.

    Left alone, generated ids are unknown and writes carry a random version, so nearly every
    request would stop at 404 or 409 and the settings validation behind them would never be
    exercised. Negative cases keep what was generated: they test the rejection paths.
    """
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    path_parameters = case.path_parameters or {}
    if "group_id" in path_parameters:
        path_parameters["group_id"] = tenant["group_id"]
    if "site_id" in path_parameters:
        path_parameters["site_id"] = tenant["site_id"]
    # The OpenAPI names the header `if-match`; match it whatever its case.
    for name in [n for n in case.headers or {} if n.lower() == "if-match"]:
        etag = current_etag(base_url, tenant["admin"], case.formatted_path)
        if etag is not None:
            case.headers[name] = etag


def dependency_down(case: Case[Any], response: Any) -> bool:
    """A documented 503 that says only that another service is not running here.

    This test runs the config service alone: no SMS gateway answers a provider test (nor an
    email gateway an email test) and the
    system health is "degraded" because the other services send no heartbeats.
    """
    if response.status_code != 503:
        return False
    body = response.json()
    if case.operation.path == "/healthz":
        return bool(
            body.get("status") == "degraded" and body["services"]["config"]["status"] == "ready"
        )
    if case.operation.path.endswith("/provider-test"):
        return bool(body.get("title") == "SMS gateway unavailable")
    if case.operation.path.endswith("/email-test"):
        return bool(body.get("title") == "Email gateway unavailable")
    return False


@schema.parametrize()
def test_every_operation_conforms(
    case: Case[Any], config: ConfigHarness, tenant: dict[str, str]
) -> None:
    aim_at_tenant(case, tenant, config.url)
    response = case.call(base_url=config.url, timeout=30)
    checks = CHECKS
    if dependency_down(case, response):
        checks = [c for c in CHECKS if c is not not_a_server_error]
    case.validate_response(response, checks=checks)


# What the run above found, pinned so that a change of generated inputs cannot hide them again.


async def test_an_undecodable_body_is_a_422_problem(
    config: ConfigHarness, tenant: dict[str, str]
) -> None:
    async with config.client(tenant["admin"]) as client:
        response = await client.post(
            f"/api/v1/sites/{tenant['site_id']}/send-now",
            content=b"\xff\xfe{",
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["body"]


async def test_a_path_with_an_encoded_newline_is_a_problem_404(
    config: ConfigHarness, tenant: dict[str, str]
) -> None:
    async with config.client(tenant["admin"]) as client:
        response = await client.get("/api/v1/sites/a%0Ab")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_openapi_declares_bearer_auth_and_problem_responses(config: ConfigHarness) -> None:
    async with config.client() as client:
        document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operation = document["paths"]["/api/v1/sites/{site_id}"]["get"]
    assert operation["security"] == [{"bearer": []}]
    assert list(operation["responses"]["404"]["content"]) == ["application/problem+json"]
