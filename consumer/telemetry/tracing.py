"""OpenTelemetry traces by the semantic conventions for messaging and HTTP.

One ``process <topic>`` CONSUMER span per input record, a child of the context the upload service
put in the record's W3C ``traceparent``/``tracestate`` headers (the conventions make the creation
context the parent of a single message's process span, so one trace runs from the upload's
producer through the checks to the verdict; a batch would link instead). Under it, one span per
check and a CLIENT span per HTTP attempt. Every output (verdict, review and escalation copies,
dead letter) carries the process span's ``traceparent``, and the verdict its ``trace_id``, so a
downstream service continues the trace. The span is the current one while the record is handled
(a context variable), so log lines carry its ids.

Configured only by the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns export on, OTLP over HTTP/protobuf through a batch
processor; ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*`` as the SDK reads them; ``OTEL_SDK_DISABLED=true`` turns
it off. Without an endpoint no span is made at all (the hot path pays nothing) and outputs carry
the input's own ``traceparent`` unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import Token
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "TRACE_HEADERS",
    "annotate",
    "check_span",
    "client_span",
    "configure_tracing",
    "current_ids",
    "current_traceparent",
    "enabled",
    "failed",
    "output_headers",
    "relay_received",
    "server_span",
    "shutdown_tracing",
    "start_process",
    "traced",
]

TRACE_HEADERS = ("traceparent", "tracestate")
_MAX_KEY_BYTES = 256
_PROPAGATOR = TraceContextTextMapPropagator()
_state: dict[str, Any] = {"tracer": None, "provider": None}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def configure_tracing(
    processor: SpanProcessor | None = None, *, service: str = "moderation-consumer"
) -> bool:
    """Turn tracing on when an OTLP endpoint is set (or a ``processor`` is given: tests pass the
    SDK's in-memory exporter). True when spans will be made."""
    if _truthy("OTEL_SDK_DISABLED"):
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if processor is None and not endpoint:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("consumer")
    return True


def shutdown_tracing() -> None:
    """Export what is left (within the batch processor's timeout) and stop."""
    provider = _state["provider"]
    _state["tracer"] = _state["provider"] = None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _state["tracer"] is not None


def _carrier(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in headers or ():
        if key in TRACE_HEADERS and value is not None:
            found[key] = value.decode("ascii", "replace")
    return found


def _processing(topic: str) -> dict[str, Any]:
    """The messaging attributes of a span that processes a record of ``topic``."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
    }


def start_process(
    topic: str, partition: int, offset: int, key: bytes | None, headers: Any, group: str
) -> tuple[Span, Token[Context]] | None:
    """The ``process <topic>`` span of one record, made current (detach the returned token with
    ``context.detach`` once the record's task is spawned); None when tracing is off."""
    tracer = _state["tracer"]
    if tracer is None:
        return None
    parent = _PROPAGATOR.extract(_carrier(headers)) if headers else None
    # at creation, what the conventions name for sampling decisions; the rest only on a span the
    # sampler keeps (most are dropped at a low ratio: they build nothing more)
    attributes = _processing(topic)
    attributes["messaging.consumer.group.name"] = group
    span = tracer.start_span(f"process {topic}", parent, SpanKind.CONSUMER, attributes)
    if span.is_recording():
        more: dict[str, Any] = {
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
        }
        if key is not None:  # the sender's bytes: bounded before they become an attribute
            more["messaging.kafka.message.key"] = key[:_MAX_KEY_BYTES].decode("utf-8", "replace")
        span.set_attributes(more)
    return span, context.attach(trace.set_span_in_context(span))


def output_headers(input_headers: Any) -> list[tuple[str, str | bytes | None]] | None:
    """``traceparent`` (and ``tracestate``) for a record's outputs: the current span's when tracing
    is on, else the input's own, so a trace the upload service started still continues. The
    input's are the sender's bytes: they pass through the W3C propagator, which drops a malformed
    ``traceparent`` and bounds ``tracestate``, so no header of any size is copied to the outputs."""
    if _state["tracer"] is None:
        if not input_headers:
            return None
        found = _carrier(input_headers)
        if not found:
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, _PROPAGATOR.extract(found))
    else:
        carrier = {}
        _PROPAGATOR.inject(carrier)
    headers: list[tuple[str, str | bytes | None]] = [(k, v.encode()) for k, v in carrier.items()]
    return headers or None


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent`` when tracing is on and a span is current."""
    if _state["tracer"] is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, when one is recording."""
    if _state["tracer"] is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def annotate(**attributes: Any) -> None:
    """Attributes of the current span (the record's ``moderation.*`` ones)."""
    if _state["tracer"] is not None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({f"moderation.{k}": v for k, v in attributes.items() if v is not None})


def failed(error_type: str, span: Span | None = None) -> None:
    """Mark ``span`` (default: the current one) as failed with ``error.type``."""
    if _state["tracer"] is None:
        return
    span = span or trace.get_current_span()
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", error_type)


def traced() -> bool:
    """True when a span made here would be recorded: tracing is on and the current trace, if
    any, was kept by the sampler. Callers skip all span work otherwise."""
    return _child_tracer() is not None


def _child_tracer() -> Tracer | None:
    """The tracer for a child of the current span; None when tracing is off or inside a trace the
    sampler dropped (its children would be dropped too: the samplers are parent-based; dropped
    traces are most of them at a low ratio, so this is what sampling saves)."""
    tracer: Tracer | None = _state["tracer"]
    if tracer is None:
        return None
    current = trace.get_current_span()
    return None if current is not trace.INVALID_SPAN and not current.is_recording() else tracer


@contextmanager
def server_span(route: str, traceparent: str | None) -> Iterator[Span | None]:
    """A SERVER span for a request we serve (``route``: the template, never the path's secrets),
    a child of ``traceparent`` when the caller passed one (a callback URL we made carries it)."""
    tracer = _state["tracer"]
    if tracer is None:
        yield None
        return
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    method, _, path = route.partition(" ")
    attributes = {"http.request.method": method, "http.route": path}
    with tracer.start_as_current_span(route, parent, SpanKind.SERVER, attributes) as span:
        yield span


def relay_received(topic: str, headers: Any, task_id: str | None) -> None:
    """A ``process <topic>`` span where a relayed callback completed a task waiting here, a child
    of the receiving process's span (from the relay record's headers)."""
    tracer = _state["tracer"]
    if tracer is None:
        return
    parent = _PROPAGATOR.extract(_carrier(headers)) if headers else None
    attributes = _processing(topic)
    if task_id:
        attributes["moderation.task_id"] = task_id
    tracer.start_span(f"process {topic}", parent, SpanKind.CONSUMER, attributes).end()


@contextmanager
def check_span(check: str, provider: str) -> Iterator[Span | None]:
    """A span for one check of the current record; None when tracing is off."""
    tracer = _child_tracer()
    if tracer is None:
        yield None
        return
    attributes = {"moderation.check": check, "moderation.provider": provider}
    # what ``start_as_current_span`` does, one context manager fewer (this runs per check)
    span = tracer.start_span(f"check {check}", attributes=attributes)
    with trace.use_span(span, end_on_exit=True):
        yield span


@contextmanager
def client_span(method: str, url: str, resend_count: int) -> Iterator[Span | None]:
    """A CLIENT span for one HTTP attempt to ``url`` (named ``{method}``; the attributes hold no
    query string, which may carry a signature, nor any key or token)."""
    tracer = _child_tracer()
    if tracer is None:
        yield None
        return
    where = urlsplit(url)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "server.address": where.hostname or "",
        "url.path": where.path,
    }
    if where.port is not None:
        attributes["server.port"] = where.port
    if resend_count:
        attributes["http.request.resend_count"] = resend_count
    span = tracer.start_span(
        method,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        yield span
