"""The container files describe what the package really provides."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

from services.cli.stack import COMPOSITION_ROOTS
from shared.config import SERVICE_NAMES
from tests.support.services import require

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_for_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    require(binary is not None, "docker-compose", "install Debian's docker-compose package")
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        env={**os.environ, "STAGGER_SECRET_KEY": "test-key"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_service_has_one_container_whose_command_exists() -> None:
    services = compose()["services"]
    commands = {
        name: spec["command"]
        for name, spec in services.items()
        if "command" in spec and spec["command"][0] == "service"
    }
    assert sorted(c[1] for c in commands.values()) == sorted(SERVICE_NAMES)
    for name, command in commands.items():
        assert name == command[1]
        folder = ROOT / "services" / command[1]
        assert any((folder / f"{root}.py").exists() for root in COMPOSITION_ROOTS)
        assert "healthcheck" in services[name], f"{name} has no health check"


def test_image_entrypoint_is_the_installed_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["stagger"]' in dockerfile
    assert scripts["stagger"] == "services.cli.main:app"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "./dev test" in readme
    last = ci.rstrip().splitlines()[-1].split()
    assert last[0] == "exec", "the test run is .ci/run's last command and its exit status"
    at = last.index("./dev")
    assert last[at + 1] == "test", last
    if last[1] == "timeout":
        # Bounded below CI's 90-minute limit, so a hang still prints its output.
        assert int(last[at - 1]) < 90 * 60


CLUSTER_ENV = ROOT / "deploy" / "compose" / "cluster.env"


def compose_config(*args: str) -> dict:
    binary = shutil.which("docker-compose")
    require(binary is not None, "docker-compose", "install Debian's docker-compose package")
    result = subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        env={**os.environ, "STAGGER_SECRET_KEY": "test-key"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_cluster_profile_is_valid_for_docker_compose() -> None:
    services = compose_config("--profile", "cluster")["services"]
    nodes = [f"nats-{n}" for n in (1, 2, 3)]
    for node in nodes:
        spec = services[node]
        assert spec["profiles"] == ["cluster"]
        config_file = spec["command"][spec["command"].index("-c") + 1]
        mount = next(v for v in spec["volumes"] if v.endswith(":/etc/stagger/nats:ro"))
        host_dir = Path(mount.split(":")[0])
        assert host_dir == ROOT / "deploy" / "nats"
        assert (host_dir / config_file.removeprefix("/etc/stagger/nats/")).exists()
        routes = spec["command"][spec["command"].index("--routes") + 1].split(",")
        assert sorted(routes) == [f"nats://{n}:6222" for n in nodes if n != node]
    provision = services["nats-provision"]
    assert provision["profiles"] == ["cluster"]
    assert provision["environment"]["STAGGER_STREAM_REPLICAS"] == "3"
    assert set(provision["depends_on"]) == set(nodes)
    # Without the cluster env file the services keep the single NATS, no login.
    for name in SERVICE_NAMES:
        env = services[name]["environment"]
        assert env["STAGGER_NATS_URL"] == "nats://nats:4222"
        assert env["STAGGER_STREAM_REPLICAS"] == "1"
        assert env["STAGGER_NATS_USER"] == ""


def test_cluster_env_points_every_service_at_three_nodes_with_its_own_user() -> None:
    services = compose_config("--env-file", str(CLUSTER_ENV))["services"]
    assert "COMPOSE_PROFILES=cluster" in CLUSTER_ENV.read_text().splitlines()
    for name in SERVICE_NAMES:
        env = services[name]["environment"]
        assert env["STAGGER_NATS_URL"].split(",") == [f"nats://nats-{n}:4222" for n in (1, 2, 3)]
        assert env["STAGGER_STREAM_REPLICAS"] == "3"
        assert env["STAGGER_NATS_USER"] == name
        assert env["STAGGER_NATS_PASSWORD"] == f"{name.replace('_', '-')}-dev-password"
