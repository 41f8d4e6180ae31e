"""What `stagger up` runs: the embedded stack for a laptop or a single small server."""

from __future__ import annotations

import importlib
import os
import sys

from shared.config import SERVICE_NAMES, StaggerConfig
from shared.domain.destinations import LOOPBACK_ALLOW
from shared.runtime.nats_server import NatsServer
from shared.runtime.service import BaseService
from shared.runtime.supervisor import ProcessSpec


def embedded_nats(settings: StaggerConfig) -> NatsServer | None:
    """The NATS server `up` starts, or None when `STAGGER_NATS_URL` points elsewhere."""
    if settings.nats_url:
        return None
    return NatsServer(
        port=settings.nats_port,
        store_dir=settings.var_dir / "nats",
        log_file=settings.var_dir / "nats.log",
    )


def stack_processes(settings: StaggerConfig) -> list[ProcessSpec]:
    """Every service, plus the local stand-ins for the outside world (SMTP sink, SMS sim)."""
    env = {
        "STAGGER_VAR_DIR": str(settings.var_dir),
        "STAGGER_NATS_URL": ",".join(settings.nats_servers),
        # The laptop stack runs the simulator beside the services, so they may offer it.
        "STAGGER_SMS_SIMULATOR_ENABLED": "true",
        # Staff invitations of groups without an email account of their own go to the sink.
        "STAGGER_STAFF_MAIL_RELAY": settings.staff_mail_relay
        or f"127.0.0.1:{os.environ.get('STAGGER_SMTP_SINK_PORT', '2525')}",
        # Alerts to group admins go to the sink too, unless the operator named a server.
        "STAGGER_ALERT_SMTP_HOST": os.environ.get("STAGGER_ALERT_SMTP_HOST", "127.0.0.1"),
        "STAGGER_ALERT_SMTP_PORT": os.environ.get(
            "STAGGER_ALERT_SMTP_PORT", os.environ.get("STAGGER_SMTP_SINK_PORT", "2525")
        ),
        # The simulator and the SMTP sink listen on this machine; an operator's own list
        # (e.g. a relay on the LAN) is kept beside loopback.
        "STAGGER_OUTBOUND_ALLOW": ",".join(filter(None, [LOOPBACK_ALLOW, settings.outbound_allow])),
    }
    if settings.log_format == "auto" and sys.stdout.isatty():
        # Children write to the supervisor's pipe, not a terminal: tell them a person reads it.
        env["STAGGER_LOG_FORMAT"] = "console"
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    sim_env = {
        **env,
        "STAGGER_SIM_STATE_FILE": os.environ.get(
            "STAGGER_SIM_STATE_FILE", str(settings.var_dir / "sms-sim.json")
        ),
        "STAGGER_SIM_DEFAULT_WEBHOOK_URL": os.environ.get(
            "STAGGER_SIM_DEFAULT_WEBHOOK_URL",
            f"http://{host}:{settings.sms_gateway_http_port}/webhooks/sms/simulator",
        ),
    }
    sink_env = {
        **env,
        "STAGGER_SMTP_SINK_DIR": os.environ.get(
            "STAGGER_SMTP_SINK_DIR", str(settings.var_dir / "smtp-sink")
        ),
    }
    outside_world = [
        ProcessSpec("sms_sim", [sys.executable, "-m", "services.sms_provider_sim"], sim_env),
        ProcessSpec("smtp_sink", [sys.executable, "-m", "services.smtp_sink"], sink_env),
    ]
    services = [
        ProcessSpec(name, [sys.executable, "-m", f"services.{name}"], env) for name in SERVICE_NAMES
    ]
    return outside_world + services


# Where a service's `definition()` lives: its composition root, or, for the gateways, the
# `service` module that runs a replica over what the composition root builds.
COMPOSITION_ROOTS = ("composition", "service")


def definition_of(name: str) -> BaseService:
    """The service `name` as the runtime runs it, built by its composition root."""
    for root in COMPOSITION_ROOTS:
        module_name = f"services.{name}.{root}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if not hasattr(module, "definition"):
            continue
        definition: BaseService = module.definition()
        return definition
    raise LookupError(f"services.{name} has no composition root")
