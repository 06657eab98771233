"""OpenTelemetry traces by the specification: its SDK environment variables and the semantic
conventions for messaging and HTTP.

One ``process <topic>`` CONSUMER span per input record. By default it LINKS to the creation context
the producer put in the record's headers (``traceparent``/``tracestate``, or B3 with
``OTEL_PROPAGATORS=b3``) and starts a trace of its own, as the messaging conventions say a process
span does; the setting ``tracing.process_span_parent: child`` makes it that context's child instead
(the conventions allow it for a single message), so one trace runs from the upload's producer to
the verdict. Under it, one span per check and a CLIENT span per HTTP attempt (``url.full`` with
credentials and query values redacted, ``server.port`` always). Every output (verdict, review and
escalation copies, dead letter) carries the process span's context in the configured propagators'
headers, and the verdict its ``trace_id``, so a downstream service continues the trace. The span is
the current one while the record is handled (a context variable), so log lines carry its ids.

Configured only by the SDK's variables, read from the mapping given to ``configure_tracing``
(``os.environ`` by default): ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) turns
export on; ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``..._TRACES_PROTOCOL``) ``http/protobuf`` (the
default) or ``grpc`` (the ``grpc`` extra); ``OTEL_PROPAGATORS`` (default ``tracecontext,baggage``,
loaded through the ``opentelemetry_propagator`` entry points as ``opentelemetry.propagate`` does);
``OTEL_SERVICE_NAME`` over ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` over our default
``moderation-consumer``, and ``service.version`` the package's; ``OTEL_TRACES_SAMPLER`` and
``OTEL_TRACES_SAMPLER_ARG``; ``OTEL_SDK_DISABLED=true`` turns it off. The exporter reads its own
``OTEL_EXPORTER_OTLP_*`` options (headers, TLS, compression, timeout) and ``OTEL_BSP_*`` from the
process environment. A value we cannot honour is a ``ConfigError`` at start, never a silent default.
Without an endpoint no span is made at all (the hot path pays nothing) and outputs carry the input's
own context unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import Token
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from consumer import __version__
from consumer.errors import ConfigError

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "REDACTED",
    "ProcessSpanParent",
    "annotate",
    "build_exporter",
    "build_resource",
    "build_sampler",
    "check_span",
    "client_span",
    "configure_tracing",
    "current_ids",
    "current_traceparent",
    "enabled",
    "failed",
    "full_url",
    "load_propagator",
    "output_headers",
    "relay_received",
    "server_span",
    "shutdown_tracing",
    "start_process",
    "traced",
]

ProcessSpanParent = Literal["link", "child"]
DEFAULT_SERVICE_NAME = "moderation-consumer"
# not an OTEL_* variable (the specification has none for it); named as the setting it would be
REDACTED = "REDACTED"  # the HTTP conventions' word for a credential or query value left out of url.full
_MAX_KEY_BYTES = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}
_W3C = TraceContextTextMapPropagator()  # the callback URL's ``traceparent`` query parameter is W3C
_ROOT = Context()  # no parent: a process span that links starts its own trace


def _default_propagator() -> TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    return CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


_state: dict[str, Any] = {
    "tracer": None,
    "provider": None,
    "propagator": _default_propagator(),
    "fields": frozenset(_default_propagator().fields),  # the header names the propagators read
    "link": True,
}


def _get(environ: Mapping[str, str], name: str) -> str:
    """A variable's value; empty means unset, as the specification says."""
    return (environ.get(name) or "").strip()


def load_propagator(environ: Mapping[str, str] | None = None) -> TextMapPropagator:
    """The propagators ``OTEL_PROPAGATORS`` names (comma-separated; ``none`` for none), loaded as
    ``opentelemetry.propagate`` loads them: each an ``opentelemetry_propagator`` entry point
    (``tracecontext`` and ``baggage`` ship with the API; ``b3`` and ``b3multi`` come with
    ``opentelemetry-propagator-b3``, the ``b3`` extra). An unknown name is a ConfigError."""
    from importlib.metadata import entry_points

    configured = _get(os.environ if environ is None else environ, "OTEL_PROPAGATORS")
    if not configured:
        return _default_propagator()
    names = [n.strip() for n in configured.split(",") if n.strip()]
    if any(n.lower() == "none" for n in names):
        return CompositePropagator([])
    found = entry_points(group="opentelemetry_propagator")
    loaded: list[TextMapPropagator] = []
    for name in names:
        matches = [ep for ep in found if ep.name == name]
        if not matches:
            known = ", ".join(sorted({ep.name for ep in found})) or "none"
            hint = " (b3 and b3multi: install moderation-consumer[b3])" if name.startswith("b3") else ""
            raise ConfigError("OTEL_PROPAGATORS", f"unknown propagator {name!r}{hint}; installed: {known}")
        loaded.append(matches[0].load()())
    return CompositePropagator(loaded)


def build_resource(environ: Mapping[str, str] | None = None) -> Resource:
    """The SDK's resource (``Resource.create``: its detectors, ``telemetry.sdk.*``) with our defaults
    ``service.name=moderation-consumer`` and ``service.version``, under what the environment says:
    ``service.name`` (and any attribute) in ``OTEL_RESOURCE_ATTRIBUTES`` wins over our default, and
    ``OTEL_SERVICE_NAME`` wins over both, as the specification orders them. The variables are read
    from ``environ`` the way the SDK's ``OTELResourceDetector`` reads the process environment."""
    environ = os.environ if environ is None else environ
    defaults = {SERVICE_NAME: DEFAULT_SERVICE_NAME, SERVICE_VERSION: __version__}
    given: dict[str, str] = {}
    for item in _get(environ, "OTEL_RESOURCE_ATTRIBUTES").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():  # the SDK skips a pair without "=" (with a warning)
            given[key.strip()] = unquote(value.strip())
    if service := _get(environ, "OTEL_SERVICE_NAME"):
        given[SERVICE_NAME] = service
    return Resource.create(defaults).merge(Resource(given))


def build_sampler(environ: Mapping[str, str] | None = None) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` names (default ``parentbased_always_on``) with its
    ``OTEL_TRACES_SAMPLER_ARG`` ratio (default 1.0). An unknown name or a ratio that is no number
    in [0, 1] is a ConfigError (the SDK would warn and sample everything)."""
    environ = os.environ if environ is None else environ
    name = _get(environ, "OTEL_TRACES_SAMPLER").lower() or "parentbased_always_on"
    fixed = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if name in fixed:
        return fixed[name]
    ratios: dict[str, Callable[[float], Sampler]] = {
        "traceidratio": TraceIdRatioBased,
        "parentbased_traceidratio": ParentBasedTraceIdRatio,
    }
    if name not in ratios:
        known = ", ".join([*fixed, *ratios])
        raise ConfigError("OTEL_TRACES_SAMPLER", f"unknown sampler {name!r}; known: {known}")
    arg = _get(environ, "OTEL_TRACES_SAMPLER_ARG") or "1.0"
    try:
        rate = float(arg)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("OTEL_TRACES_SAMPLER_ARG", "must be a ratio from 0 to 1")
    return ratios[name](rate)


def _protocol(environ: Mapping[str, str]) -> tuple[str, str]:
    """(the variable that chose it, the OTLP protocol); ConfigError for one we cannot speak."""
    setting = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    protocol = _get(environ, setting)
    if not protocol:
        setting = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = _get(environ, setting) or "http/protobuf"
    if protocol == "http/json":
        problem = (
            "http/json is not implemented by the OpenTelemetry Python exporter; use http/protobuf or grpc"
        )
        raise ConfigError(setting, problem)
    if protocol not in ("http/protobuf", "grpc"):
        raise ConfigError(setting, f"unknown protocol {protocol!r}; use http/protobuf or grpc")
    return setting, protocol


def build_exporter(environ: Mapping[str, str] | None = None) -> SpanExporter | None:
    """The OTLP span exporter the environment asks for, or None without an endpoint.

    ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` (else ``OTEL_EXPORTER_OTLP_PROTOCOL``): ``http/protobuf``
    (the default) or ``grpc`` (the optional extra ``moderation-consumer[grpc]``). ``http/json`` is a
    protocol of the specification that the Python exporter does not implement: refused, as is any
    other. The endpoint: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (with ``/v1/traces`` appended for HTTP)."""
    environ = os.environ if environ is None else environ
    setting, protocol = _protocol(environ)
    signal_endpoint = _get(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    endpoint = _get(environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if not signal_endpoint and not endpoint:
        return None
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise ConfigError(
                setting,
                "grpc needs the optional extra: pip install 'moderation-consumer[grpc]'"
                " (opentelemetry-exporter-otlp-proto-grpc)",
            ) from None
        return GrpcExporter(endpoint=signal_endpoint or endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=signal_endpoint or f"{endpoint.removesuffix('/')}/v1/traces")


def configure_tracing(
    processor: SpanProcessor | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    process_span_parent: ProcessSpanParent = "link",
) -> bool:
    """Read the OTEL_* variables from ``environ`` (default ``os.environ``) and turn tracing on when
    an OTLP endpoint is set (or a ``processor`` is given: tests pass the SDK's in-memory exporter).
    ``process_span_parent``: the setting ``tracing.process_span_parent``. True when spans will be
    made. The propagators apply even when tracing is off (outputs pass the input's context on
    through them). Raises ConfigError for a value it cannot honour."""
    environ = os.environ if environ is None else environ
    propagator = load_propagator(environ)
    link = process_span_parent == "link"
    from opentelemetry import propagate

    _state["propagator"], _state["fields"], _state["link"] = propagator, frozenset(propagator.fields), link
    propagate.set_global_textmap(propagator)  # for any library that propagates through the API
    # the baggage propagator warns once per dropped entry, quoting it: a sender's bytes, per record
    logging.getLogger("opentelemetry.baggage.propagation").setLevel(logging.ERROR)
    if _get(environ, "OTEL_SDK_DISABLED").lower() == "true":
        return False
    sampler, resource = build_sampler(environ), build_resource(environ)
    if processor is None:
        exporter = build_exporter(environ)
        if exporter is None:
            return False
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(exporter)
    else:
        _protocol(environ)  # refused even when a test's processor stands in for the exporter
    provider = TracerProvider(sampler=sampler, resource=resource)
    provider.add_span_processor(processor)
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("consumer", __version__)
    return True


def shutdown_tracing() -> None:
    """Export what is left (within the batch processor's timeout) and stop; the propagators are
    the defaults again."""
    provider = _state["provider"]
    _state["tracer"] = _state["provider"] = None
    _state["propagator"] = _default_propagator()
    _state["fields"] = frozenset(_state["propagator"].fields)
    _state["link"] = True
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _state["tracer"] is not None


def _carrier(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """The headers the configured propagators read (``traceparent``, ``tracestate``, ``baggage``,
    B3's), by lower-case name (a Kafka header's name keeps its case: ``X-B3-TraceId`` is B3's
    ``x-b3-traceid``), decoded; the sender's bytes, bounded by the record's header caps before
    they get here."""
    fields = _state["fields"]
    found: dict[str, str] = {}
    for key, value in headers or ():
        name = key.lower()
        if name in fields and value is not None:
            found[name] = value.decode("ascii", "replace")
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
    ``context.detach`` once the record's task is spawned); None when tracing is off.

    It links to the record's creation context (``tracing.process_span_parent: link``, the
    default: a trace of its own, sampled on its own) or is its child (``child``). The extracted
    baggage is current either way, so the outputs carry it on."""
    tracer = _state["tracer"]
    if tracer is None:
        return None
    extracted = _state["propagator"].extract(_carrier(headers)) if headers else None
    links: list[Link] | None = None
    parent: Context | None = extracted
    if _state["link"]:  # no parent (a span reads nothing else from it); the baggage is attached below
        parent = _ROOT
        if extracted is not None:
            creation = trace.get_current_span(extracted).get_span_context()
            links = [Link(creation)] if creation.is_valid else None
    # at creation, what the conventions name for sampling decisions; the rest only on a span the
    # sampler keeps (most are dropped at a low ratio: they build nothing more)
    attributes = _processing(topic)
    attributes["messaging.consumer.group.name"] = group
    span = tracer.start_span(f"process {topic}", parent, SpanKind.CONSUMER, attributes, links)
    if span.is_recording():
        more: dict[str, Any] = {
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
        }
        if key is not None:  # the sender's bytes: bounded before they become an attribute
            more["messaging.kafka.message.key"] = key[:_MAX_KEY_BYTES].decode("utf-8", "replace")
        span.set_attributes(more)
    return span, context.attach(trace.set_span_in_context(span, extracted))


def output_headers(input_headers: Any) -> list[tuple[str, str | bytes | None]] | None:
    """The trace context headers for a record's outputs, in the configured propagators' format:
    the current span's when tracing is on, else the input's own, so a trace the upload service
    started still continues. The input's are the sender's bytes: they pass through the
    propagators, which drop a malformed ``traceparent`` (or B3 id) and bound ``tracestate`` and
    ``baggage``, so no header of any size is copied to the outputs."""
    propagator = _state["propagator"]
    carrier: dict[str, str] = {}
    if _state["tracer"] is None:
        if not input_headers:
            return None
        found = _carrier(input_headers)
        if not found:
            return None
        propagator.inject(carrier, propagator.extract(found))
    else:
        propagator.inject(carrier)
    headers: list[tuple[str, str | bytes | None]] = [(k, v.encode()) for k, v in carrier.items()]
    return headers or None


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent`` when tracing is on and a span is current (the
    callback URL's query parameter: W3C whatever the propagators)."""
    if _state["tracer"] is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
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
    parent = _W3C.extract({"traceparent": traceparent}) if traceparent else None
    method, _, path = route.partition(" ")
    attributes = {"http.request.method": method, "http.route": path}
    with tracer.start_as_current_span(route, parent, SpanKind.SERVER, attributes) as span:
        yield span


def relay_received(topic: str, headers: Any, task_id: str | None) -> None:
    """A ``process <topic>`` span where a relayed callback completed a task waiting here, a child
    of the receiving process's span (from the relay record's headers, which this service wrote:
    one task's trace across processes, whatever ``process_span_parent`` says of uploads)."""
    tracer = _state["tracer"]
    if tracer is None:
        return
    parent = _state["propagator"].extract(_carrier(headers)) if headers else None
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


def full_url(url: str | SplitResult) -> str:
    """``url.full`` as the HTTP conventions want it: the credentials of a ``user:password@`` part
    and every query value replaced by ``REDACTED`` (a query may carry a signature or a key; the
    names stay), no fragment."""
    where = urlsplit(url) if isinstance(url, str) else url
    netloc = where.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{REDACTED}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    full = f"{where.scheme}://{netloc}{where.path}"
    if where.query:
        pairs = (p.partition("=") for p in where.query.split("&"))
        full += "?" + "&".join(f"{name}={REDACTED}" if sep else REDACTED for name, sep, _ in pairs)
    return full


@contextmanager
def client_span(method: str, url: str, resend_count: int) -> Iterator[Span | None]:
    """A CLIENT span for one HTTP attempt to ``url`` (named ``{method}``): ``url.full`` redacted
    (``full_url``), ``server.address`` and ``server.port`` (the scheme's default when the URL names
    none), never a key or token."""
    tracer = _child_tracer()
    if tracer is None:
        yield None
        return
    where = urlsplit(url)
    try:
        port = where.port or _DEFAULT_PORTS.get(where.scheme)
    except ValueError:  # a port that is no number: the request fails on its own
        port = None
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "server.address": where.hostname or "",
        "url.full": full_url(where),
    }
    if port is not None:
        attributes["server.port"] = port
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
