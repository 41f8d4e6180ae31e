"""deploy/nats/cluster: three nodes form a JetStream cluster, streams get 3 replicas, the
permissions hold on every node, and losing one node loses nothing acknowledged.

The streams are declared by the Kubernetes provisioning Job's own script
(deploy/kubernetes/provision-job.yaml), run as the `admin` user against the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
import yaml

from shared.bus import subjects
from shared.bus.topology import CONSUMERS, DISPATCH, STREAMS
from tests.integration.deploy.nats_configs import (
    ROOT,
    DeployedNats,
    cluster,
    connect_as,
    dev_password,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

JOB = ROOT / "deploy" / "kubernetes" / "provision-job.yaml"


def job_script() -> str:
    job = yaml.safe_load(JOB.read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-c"]
    return container["args"][0]


def run_job_script(urls: str, replicas: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env.update(
        {
            "STAGGER_NATS_URL": urls,
            "STAGGER_NATS_USER": "admin",
            "STAGGER_NATS_PASSWORD": dev_password("admin"),
            "STAGGER_STREAM_REPLICAS": str(replicas),
            "STAGGER_STARTUP_TIMEOUT_SECONDS": "90",
        }
    )
    return subprocess.run(
        [sys.executable, "-c", job_script()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[DeployedNats]]:
    with cluster(tmp_path_factory.mktemp("deploy-cluster")) as started:
        urls = ",".join(node.url for node in started)
        result = run_job_script(urls, replicas=3)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "provisioned" in result.stdout
        yield started


async def test_every_stream_has_three_replicas(nodes: list[DeployedNats]) -> None:
    async with connect_as(nodes[0].url, "admin") as admin:
        js = admin.nc.jetstream()
        for spec in STREAMS:
            info = await js.stream_info(spec.name)
            assert info.config.num_replicas == 3, spec.name
            assert info.cluster is not None and info.cluster.leader, spec.name
            assert len(info.cluster.replicas or []) == 2, spec.name
        for consumer in CONSUMERS:
            found = await js.consumer_info(consumer.stream, consumer.durable)
            assert found.config.filter_subject == consumer.filter_subject


async def test_permissions_hold_on_every_node(nodes: list[DeployedNats]) -> None:
    for node in nodes:
        async with connect_as(node.url, "sms_gateway") as gateway:
            js = gateway.nc.jetstream()
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subjects.settings_site("g-cl", "s-cl"), b"{}", timeout=1.5)
            await wait_until(
                gateway.refused("publish", subjects.settings_site("g-cl", "s-cl")),
                timeout=10,
                message="refusal",
            )
            ack = await js.publish(
                subjects.dispatch("sms", "s-cl"),
                b"{}",
                headers={"Nats-Msg-Id": f"cluster-{node.server.name}"},
                timeout=10,
            )
            assert ack.stream == DISPATCH


async def test_a_node_lost_loses_nothing_acknowledged(
    nodes: list[DeployedNats], tmp_path: Path
) -> None:
    urls = [node.url for node in nodes]
    async with connect_as(urls[0], "admin") as admin:
        info = await admin.nc.jetstream().stream_info(DISPATCH)
        before = info.state.messages
        leader = info.cluster.leader if info.cluster else None
    victim = next(node for node in nodes if node.server.name == leader)
    survivors = [node.url for node in nodes if node is not victim]
    victim.server.kill()
    try:
        async with connect_as(survivors[0], "sms_gateway") as gateway:
            js = gateway.nc.jetstream()

            async def published() -> bool:
                # A new stream leader is elected within seconds; until then no ack comes.
                try:
                    await js.publish(
                        subjects.dispatch("sms", "s-failover"),
                        b"{}",
                        headers={"Nats-Msg-Id": "failover-1"},
                        timeout=2,
                    )
                except (nats.errors.Error, nats.js.errors.APIError, TimeoutError):
                    return False
                return True

            await wait_until(published, timeout=60, interval=0.5, message="publish after loss")
        async with connect_as(survivors[0], "admin") as admin:
            info = await admin.nc.jetstream().stream_info(DISPATCH)
            assert info.state.messages == before + 1
            assert info.cluster is not None and info.cluster.leader != leader
    finally:
        victim.server.start()
