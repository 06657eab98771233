"""Local OTLP trace receivers on 127.0.0.1: ``OtlpReceiver`` takes ``POST /v1/traces`` (OTLP/HTTP,
protobuf), ``OtlpGrpcReceiver`` the gRPC ``TraceService/Export``; both decode with
``opentelemetry-proto`` (the official protobufs), keep the spans in memory and, optionally, append
them to a JSON-lines file a user can open (one span per line, its links included). For tests and
the demo; a deployment sends to its own collector."""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpGrpcReceiver", "OtlpReceiver", "ReceivedSpan", "decode", "spans_of"]

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id) it links to


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    found = getattr(value, which)
    if which == "array_value":
        return [_value(v) for v in found.values]
    if which == "kvlist_value":
        return _attributes(found.values)
    return found


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return spans_of(request)


def spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status={0: "UNSET", 1: "OK", 2: "ERROR"}.get(span.status.code, "UNSET"),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                )
    return spans


class _Spans:
    """What a receiver has received, and the JSON-lines file it appends to."""

    def __init__(self, spans_file: Path | None) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._file = spans_file

    def _add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)
            if self._file is not None:
                with self._file.open("a") as out:
                    for span in spans:
                        out.write(json.dumps(asdict(span)) + "\n")

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]


class OtlpReceiver(_Spans):
    """OTLP/HTTP: ``start()`` returns the endpoint to give as ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    def __init__(self, spans_file: Path | None = None) -> None:
        super().__init__(spans_file)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 64 << 20))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                try:
                    spans = decode(body)
                except Exception:  # a body that is not an export request
                    self.send_error(400)
                    return
                receiver._add(spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> OtlpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OtlpGrpcReceiver(_Spans):
    """OTLP/gRPC (plaintext): ``start()`` returns ``http://127.0.0.1:<port>``, the endpoint to give
    as ``OTEL_EXPORTER_OTLP_ENDPOINT`` with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``. Needs grpcio
    (the ``grpc`` extra of moderation-consumer)."""

    def __init__(self, spans_file: Path | None = None) -> None:
        super().__init__(spans_file)
        self._server: Any = None
        self._port = 0

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> str:
        from concurrent.futures import ThreadPoolExecutor

        import grpc  # type: ignore[import-untyped]
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
                receiver._add(spans_of(request))
                return ExportTraceServiceResponse()

        self._server = grpc.server(ThreadPoolExecutor(2, thread_name_prefix="otlp-grpc-receiver"))
        add = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
        add(Service(), self._server)  # type: ignore[no-untyped-call]
        self._port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(10)

    def __enter__(self) -> OtlpGrpcReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
