"""The deployment files agree with the code: Kubernetes manifests, Helm values, alert rules.

Pure file checks (no cluster needed): every manifest parses; every service has one Deployment
running `stagger service <name>` with readiness and liveness probes on its declared port,
resources, enough replicas and a disruption budget; every variable is a real setting; every
secret reference resolves; every metric an alert uses exists in the code.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from shared.config import DEFAULT_HTTP_PORTS, SERVICE_NAMES
from shared.config_registry import all_config_classes
from tests.integration.deploy.nats_configs import DEPLOY_NATS, ROOT

K8S = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
REPLICATED = {"scheduler", "email_gateway", "sms_gateway"}


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        path = K8S / name
        assert path.exists(), f"kustomization lists missing {name}"
        found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def deployments() -> dict[str, dict[str, Any]]:
    """Service name → its Deployment."""
    found = {}
    for d in of_kind("Deployment"):
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["stagger"], d["metadata"]["name"]
        assert container["args"][0] == "service", d["metadata"]["name"]
        found[container["args"][1]] = d
    return found


def setting_names() -> set[str]:
    """Every STAGGER_* variable a service reads (the gateways' own settings included)."""
    from services.email_gateway.config import EmailGatewayConfig as EmailSettings
    from services.sms_gateway.config import GatewayConfig as SmsSettings

    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in {*all_config_classes(), EmailSettings, SmsSettings}
        for name in cls.model_fields
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def test_every_manifest_parses_and_sits_in_the_namespace() -> None:
    docs = documents()
    assert {d["kind"] for d in docs} >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "stagger", doc["metadata"]["name"]


def test_one_deployment_per_service_running_stagger_service_name() -> None:
    found = deployments()
    assert sorted(found) == sorted(SERVICE_NAMES)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == ["stagger"]
    for name, deployment in found.items():
        c = container(deployment)
        assert c["command"] + c["args"] == ["stagger", "service", name]
        assert c["image"] == "stagger", "kustomization.yaml's images: rewrites it"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_probes_point_at_a_declared_port_of_the_service(name: str) -> None:
    c = container(deployments()[name])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(ports.values()) == {DEFAULT_HTTP_PORTS[name]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        check = c[probe]["httpGet"]
        assert check["path"] == path, f"{name} {probe}"
        port = check["port"]
        assert port in ports or port in ports.values(), f"{name} {probe} on undeclared {port}"
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_resources_replicas_and_graceful_shutdown(name: str) -> None:
    deployment = deployments()[name]
    c = container(deployment)
    for bound in ("requests", "limits"):
        assert set(c["resources"][bound]) >= {"cpu", "memory"}, f"{name} {bound}"
    if name in REPLICATED:
        assert deployment["spec"]["replicas"] >= 2, name
    config = of_kind("ConfigMap")[0]["data"]
    drain = float(config["STAGGER_DRAIN_TIMEOUT_SECONDS"])
    pause = 0.0
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if pre_stop[:1] == ["sleep"]:
        pause = float(pre_stop[1])
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > drain + pause, f"{name}: SIGTERM must have time to drain"
    startup = c["startupProbe"]
    patience = startup["periodSeconds"] * startup["failureThreshold"]
    assert patience > float(config["STAGGER_STARTUP_TIMEOUT_SECONDS"]), name


def test_gateways_and_schedulers_have_disruption_budgets() -> None:
    budgets = {
        tuple(sorted(p["spec"]["selector"]["matchLabels"].items())): p
        for p in of_kind("PodDisruptionBudget")
    }
    for name, deployment in deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        if name in REPLICATED:
            budget = budgets.get(tuple(sorted(selector.items())))
            assert budget is not None, f"{name} has no PodDisruptionBudget"
            assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_every_service_object_selects_a_deployment_port() -> None:
    pods = {
        name: (d["spec"]["template"]["metadata"]["labels"], container(d))
        for name, d in deployments().items()
    }
    services = of_kind("Service")
    assert len(services) == len(SERVICE_NAMES)
    for service in services:
        selector = service["spec"]["selector"]
        matched = [(labels, c) for labels, c in pods.values() if selector.items() <= labels.items()]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in matched[0][1]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_variables_are_real_settings_and_secrets_resolve() -> None:
    known = setting_names()
    config = of_kind("ConfigMap")[0]
    assert set(config["data"]) <= known, set(config["data"]) - known
    secret = of_kind("Secret")[0]
    keys = set(secret["stringData"])
    accounts = (DEPLOY_NATS / "accounts.conf").read_text()
    workloads = [*deployments().values(), *of_kind("Job")]
    for workload in workloads:
        spec = workload["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] == config["metadata"]["name"]
            env = {e["name"]: e for e in c.get("env", [])}
            assert set(env) <= known, set(env) - known
            for entry in env.values():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in keys, ref["key"]
            user = env["STAGGER_NATS_USER"]["value"]
            assert re.search(rf"\{{ user: {user}, password: \$NATS_PASSWORD_", accounts) or (
                re.search(rf"user: {user}, password:", accounts)
            ), f"{user} is not a NATS user of deploy/nats/accounts.conf"
            password_key = env["STAGGER_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
            assert password_key == f"nats-password-{user.replace('_', '-')}"


def test_secret_template_holds_only_placeholders() -> None:
    secret = of_kind("Secret")[0]
    for key, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, f"{key} must stay a placeholder in the template"


def test_only_services_that_open_secrets_get_the_key() -> None:
    holders = {
        name
        for name, d in deployments().items()
        if any(e["name"] == "STAGGER_SECRET_KEY" for e in container(d).get("env", []))
    }
    assert holders == {"config", "email_gateway", "sms_gateway"}


def test_provision_job_script_compiles_and_uses_the_admin_user() -> None:
    (job,) = of_kind("Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    compile(c["args"][0], "provision-job", "exec")
    env = {e["name"]: e for e in c["env"]}
    assert env["STAGGER_NATS_USER"]["value"] == "admin"


def test_nats_helm_values_describe_a_three_node_jetstream_cluster() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] == 3
    assert config["jetstream"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert config["merge"]["$include"].endswith("/accounts.conf")


def metric_names_in_code() -> set[str]:
    names = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]:
        names |= set(
            re.findall(
                r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"(stagger_[a-z_]+)\"", path.read_text()
            )
        )
    return names


def test_alert_rules_parse_and_use_metrics_that_exist() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    defined = metric_names_in_code()
    assert {"stagger_sends_total", "stagger_queue_depth"} <= defined
    docs = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", docs, flags=re.MULTILINE)
    }
    seen = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] not in seen
            seen.add(rule["alert"])
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description", "runbook"} <= set(rule["annotations"])
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in operations.md"
            for used in re.findall(r"\bstagger_[a-z_]+", rule["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", used)
                assert base in defined, f"{rule['alert']} uses unknown metric {used}"
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_operations_guide_names_only_existing_files() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    for target in re.findall(r"`((?:deploy|docs|tests)/[\w./-]+)`", docs):
        assert (ROOT / target.rstrip("/")).exists(), f"operations.md names missing {target}"
