"""Fixtures: a nats-server running deploy/nats/standalone.conf, provisioned by the admin user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.deploy.nats_configs import DeployedNats, provision, standalone


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedNats]:
    """deploy/nats/standalone.conf on free ports, streams and durables declared by `admin`."""
    with standalone(tmp_path_factory.mktemp("deploy-nats")) as server:
        result = provision(server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        yield server
