"""OpenTelemetry tracing: one trace from the HTTP submission to the provider's answer.

Off by default. `STAGGER_TRACING` turns it on for a process (`run` calls `configure`):

- `off`: nothing is traced; no header is read or written, no span object is made;
- `console`: finished spans are printed on stdout (one JSON document per span);
- `otlp`: spans go to an OpenTelemetry collector over OTLP/HTTP. That needs the optional extra
  `otel` (`opentelemetry-exporter-otlp-proto-http`); the exporter reads the standard
  `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `…_HEADERS` variables.
  Without the package the process logs one warning and runs untraced.

How the context flows (W3C Trace Context, `traceparent`/`tracestate`):

1. The config service's `stagger.submit` span covers validating and publishing a batch. It
   continues a caller's trace when the HTTP request carries `traceparent`, and its context is
   injected into the headers of every message it publishes to the outbox.
2. The gateway's intake extracts it and opens one `stagger.intake` span per message; that
   span's `traceparent` is stored in the message's row (`<channel>_messages.traceparent`), so
   the context survives the queue: minutes, days, restarts and other replicas.
3. The send, whenever a tick releases the message, is a `stagger.send` span whose parent is that
   stored context, around the provider call (`ChannelAdapter.send`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

Mode = Literal["off", "console", "otlp"]
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACER_NAME = "stagger"
OTLP_EXTRA = "otel"

# Span names (docs/observability.md lists them).
SUBMIT = "stagger.submit"
INTAKE = "stagger.intake"
SEND = "stagger.send"

_PROPAGATOR = TraceContextTextMapPropagator()


class TracingConfig(BaseSettings):
    """Tracing settings (`STAGGER_TRACING`)."""

    model_config = SettingsConfigDict(env_prefix="STAGGER_", extra="ignore", frozen=True)

    tracing: Mode = Field(
        default="off",
        description="OpenTelemetry tracing: `off`, `console` (spans on stdout) or `otlp` "
        "(OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`; needs the `otel` extra).",
    )

    @field_validator("tracing", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class _NoSpan:
    """The context manager `span` returns when tracing is off: no allocation, no work."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


class _State:
    enabled: bool = False
    tracer: Tracer = trace.NoOpTracer()
    provider: TracerProvider | None = None


_state = _State()


def enabled() -> bool:
    """Whether this process traces (check it before doing any tracing work on a hot path)."""
    return _state.enabled


def configure(
    service: str, *, instance: str | None = None, mode: str | None = None
) -> TracerProvider | None:
    """Set up tracing for a service process from `STAGGER_TRACING` (or `mode`).

    Returns the provider, or None when tracing stays off (asked for, or the OTLP exporter is
    not installed: one warning says so).
    """
    chosen = TracingConfig(tracing=mode) if mode is not None else TracingConfig()  # type: ignore[arg-type]
    if chosen.tracing == "off":
        disable()
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    exporter: Any
    if chosen.tracing == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning(
                "STAGGER_TRACING=otlp needs the OTLP/HTTP exporter "
                f"(pip install 'stagger[{OTLP_EXTRA}]' or opentelemetry-exporter-otlp-proto-http)"
                "; tracing is off"
            )
            disable()
            return None
        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter(out=sys.stdout)
    attributes = {"service.name": f"stagger-{service}", "service.namespace": "stagger"}
    if instance:
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    log.info("tracing on", extra={"exporter": chosen.tracing})
    return provider


def install(provider: TracerProvider) -> None:
    """Trace through `provider` from now on (tests install one with an in-memory exporter)."""
    _state.provider = provider
    _state.tracer = provider.get_tracer(TRACER_NAME)
    _state.enabled = True


def disable() -> None:
    """Stop tracing (spans already started still end normally)."""
    _state.enabled = False
    _state.tracer = trace.NoOpTracer()
    _state.provider = None


def shutdown() -> None:
    """Export what is buffered and stop tracing."""
    provider = _state.provider
    disable()
    if provider is not None:
        provider.shutdown()


# --- context through NATS headers ---------------------------------------------------------


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to message headers.

    Nothing happens when tracing is off or no span is current.
    """
    if _state.enabled:
        _PROPAGATOR.inject(headers)


def extract(headers: Mapping[str, str] | None) -> Context | None:
    """The remote context carried by message (or HTTP) headers; None if off or absent."""
    if not _state.enabled or not headers or headers.get(TRACEPARENT) is None:
        return None
    return _PROPAGATOR.extract(headers)


def traceparent_of(span: Span) -> str | None:
    """The W3C `traceparent` naming `span` (None for a span that records nothing)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def context_from_traceparent(value: str | None) -> Context | None:
    """A parent context from a stored `traceparent`; None if off, absent or malformed."""
    if not _state.enabled or not value:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: value})


# --- spans ----------------------------------------------------------------------------------


def span(
    name: str,
    *,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """A context manager for a span made current for the block (a shared no-op when off).

    An exception leaving the block is recorded on the span, which then ends with an error.
    """
    if not _state.enabled:
        return _NO_SPAN
    return _state.tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=_clean(attributes)
    )


def start_span(
    name: str,
    *,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """A span the caller ends itself (INVALID_SPAN, which does nothing, when off)."""
    if not _state.enabled:
        return INVALID_SPAN
    return _state.tracer.start_span(name, context=parent, kind=kind, attributes=_clean(attributes))


def intake_span(
    headers: Mapping[str, str] | None,
    *,
    message_id: str,
    site_id: str,
    channel: str,
    subject: str,
) -> Span:
    """A gateway's `stagger.intake` span for one outbox message, child of its submission."""
    return start_span(
        INTAKE,
        parent=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            "stagger.message_id": message_id,
            "stagger.site_id": site_id,
            "stagger.channel": channel,
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": subject,
        },
    )


def send_span(
    traceparent: str | None,
    *,
    message_id: str,
    site_id: str,
    channel: str,
    account: str,
    attempt: int,
) -> Any:
    """The `stagger.send` span around one provider call, child of the message's intake."""
    if not _state.enabled:
        return _NO_SPAN
    return span(
        SEND,
        parent=context_from_traceparent(traceparent),
        kind=SpanKind.CLIENT,
        attributes={
            "stagger.message_id": message_id,
            "stagger.site_id": site_id,
            "stagger.channel": channel,
            "stagger.account": account,
            "stagger.attempt": attempt,
        },
    )


def record_send(span: Span, result: Any) -> None:
    """Put a provider's answer (a `SendResult`) on the send span; refusals are errors."""
    if not span.is_recording():
        return
    span.set_attribute("stagger.outcome", result.outcome)
    if result.provider_message_id:
        span.set_attribute("stagger.provider_message_id", result.provider_message_id)
    if result.outcome in ("failed", "retry"):
        error = result.error or result.outcome
        span.set_attribute("stagger.error", error)
        span.set_status(StatusCode.ERROR, error)


def record_error(span: Span, reason: str) -> None:
    """Mark a span failed with `reason` (e.g. a message dead-lettered at intake)."""
    if span.is_recording():
        span.set_attribute("stagger.error", reason)
        span.set_status(StatusCode.ERROR, reason)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if attributes is None:
        return None
    return {k: v for k, v in attributes.items() if v is not None}
