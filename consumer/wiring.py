"""The composition root: every part of the service built from ``Settings`` in this one module.
``check_settings`` reads what the configuration needs once, at start; ``build_pipeline`` decides
which client answers which check; ``assembled`` builds one running process (codec, Kafka clients,
delivery, outputs, callbacks, pipeline, handler, rebalances, watch, policy and secret files, the loop) and
closes it in reverse. The sizes derived from settings are named here (``provider_pool_size``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from consumer.callbacks.receiver import AsyncTasks, Correlator
from consumer.callbacks.server import CallbackServer
from consumer.checks.builtin import default_registry
from consumer.checks.maintenance import IndexMaintenance
from consumer.checks.media import DOWNLOAD_CONCURRENCY, MediaFetcher, MediaPolicy, download_gate
from consumer.checks.pipeline import ActiveCheck, Pipeline
from consumer.checks.providers.http import ProviderGate
from consumer.checks.redaction import Redactor, redactor_for
from consumer.checks.registry import BuildContext, CheckRegistry, Feeds
from consumer.checks.retry import RetryPolicy
from consumer.config import Settings
from consumer.core.limits import AimdLimit, CircuitBreaker, TokenBucket
from consumer.core.records import MediaType
from consumer.core.scheduler import Scheduler
from consumer.core.stalls import CommitWatch
from consumer.delivery.outputs import Outputs
from consumer.delivery.partitions import Partitions
from consumer.delivery.progress import Progress
from consumer.delivery.strategies import delivery_for
from consumer.errors import ConfigError
from consumer.handling import RecordHandler
from consumer.kafka import Sink, Source, ensure_topics, output_limit
from consumer.policy.decision import Policy
from consumer.policy.reload import PolicyReloader
from consumer.policy.shadow import Shadow
from consumer.policy.tenants import PolicySet, PolicyStore, load_policies
from consumer.runtime.health import metrics_handler
from consumer.runtime.secrets import SecretFiles
from consumer.runtime.watch import Watch
from consumer.runtime.workers import Worker
from consumer.schema_registry import codec_for, output_schemas, prepare_outputs
from consumer.serde import Codec
from consumer.service import ModerationService
from consumer.transports.egress import EgressPolicy
from consumer.transports.filewatch import FileWatch
from consumer.transports.httpclient import AiohttpClient, HttpClient

__all__ = [
    "Assembled",
    "assembled",
    "build_pipeline",
    "check_settings",
    "media_client",
    "provider_client",
    "provider_pool_size",
]


def check_settings(settings: Settings, registry: CheckRegistry | None = None) -> PolicyStore:
    """Every secret and choice the configuration needs, read once at start (ConfigError if missing):
    the checks ``processing.checks`` names are registered, their keys and options are there, and
    the policies (live, and shadow if set) pass ``policy check``. Returns them."""
    registry = registry or default_registry()
    for name in settings.check_options:
        if name not in registry:
            raise ConfigError(f"check_options.{name}", f"no check named {name!r} is registered")
    for spec in registry.selected(settings.processing.checks):
        spec.require(settings)
        spec.read_options(settings)
    live = load_policies(settings.policy_file, registry)
    shadow = settings.shadow_policy_file
    return PolicyStore(
        live, load_policies(shadow, registry, setting="shadow_policy_file") if shadow else None
    )


def _gate(settings: Settings, check: str) -> ProviderGate:
    lim = settings.limits
    rate = lim.rate_per_s.get(check)
    return ProviderGate(
        check,
        AimdLimit(float(lim.initial_concurrency), float(lim.min_concurrency), float(lim.max_concurrency)),
        TokenBucket(rate, max(1.0, rate)) if rate else None,
        CircuitBreaker(lim.breaker_threshold, lim.breaker_cooldown_s),
    )


def egress_policy(settings: Settings) -> EgressPolicy:
    return EgressPolicy.of(settings.media.allow_networks, settings.media.deny_networks)


# Connections per record in flight in the provider pool: an upload's checks after the hash match
# run together (visual classification and the similarity query), so each record may hold two.
CONNECTIONS_PER_RECORD = 2


def provider_pool_size(settings: Settings) -> int:
    """The provider client's keep-alive pool: ``CONNECTIONS_PER_RECORD`` for every record in
    flight (``processing.max_in_flight``), so no check waits for a connection another holds."""
    return settings.processing.max_in_flight * CONNECTIONS_PER_RECORD


def provider_client(settings: Settings) -> HttpClient:
    """The client provider calls use (endpoints from settings): aiohttp, a bounded keep-alive pool
    (``provider_pool_size``)."""
    return AiohttpClient(provider_pool_size(settings), settings.hive.timeout_s)


def media_client(settings: Settings) -> HttpClient:
    """The client media downloads use: its own pool, and the egress policy on every address."""
    m = settings.media
    return AiohttpClient(
        DOWNLOAD_CONCURRENCY,  # as many connections as the download gate lets run at once
        m.download_timeout_s,
        egress=egress_policy(settings),
        max_answer_bytes=settings.hive.max_upload_bytes,
    )


def build_pipeline(
    settings: Settings,
    http: HttpClient,
    tasks: AsyncTasks | None = None,
    *,
    media_http: HttpClient | None = None,
    policy: Policy | PolicySet | PolicyStore | None = None,
    registry: CheckRegistry | None = None,
    redactor: Redactor | None = None,
) -> Pipeline:
    """``http`` calls the providers (endpoints from settings); ``media_http`` downloads media that
    uploads name (default: ``http``, for tests on one mock transport); ``policy``: what
    ``check_settings`` returned (read here when not given); ``registry``: the checks there are
    (default: the shipped ones and those installed packages declare); ``redactor``: what keeps
    secrets out of provider messages (default: one holding the settings' secrets)."""
    registry = registry or default_registry()
    policy = policy or check_settings(settings, registry)
    redactor = redactor or redactor_for(settings)
    p, h, m = settings.processing, settings.hive, settings.media
    retry = RetryPolicy(p.retry_attempts, p.retry_base_delay_s, p.retry_max_delay_s)
    fetcher = MediaFetcher(
        media_http or http,
        h.max_upload_bytes,
        m.download_timeout_s,
        egress=egress_policy(settings),
        max_redirects=m.max_redirects,
        retry=retry,
        gate=download_gate(DOWNLOAD_CONCURRENCY),
    )
    media = MediaPolicy(h.media_mode, fetcher)
    active: list[ActiveCheck] = []
    for spec in registry.selected(p.checks):
        gate = _gate(settings, spec.name) if spec.gated else None
        options = spec.read_options(settings)
        redactor.register_options(options)  # a check's own secrets are redacted like the service's
        context = BuildContext(settings, http, fetcher, media, retry, gate, tasks, options, redactor)
        client = spec.build(context)
        if client is not None:
            active.append(ActiveCheck(spec, client, gate))
    if not any(check.spec.first for check in active):
        logging.getLogger("consumer.wiring").warning(
            "no hash-matching check runs (processing.checks): uploads are not hash-matched for "
            "known CSAM; this is meant for benchmarks only"
        )
    return Pipeline(
        active,
        policy,
        deadline_s=p.check_deadline_s,
        async_deadline_s=settings.callbacks.deadline_s,
        async_media=frozenset(MediaType(kind) for kind in p.async_media) if tasks else frozenset(),
        cache_size=p.result_cache_size,
        dead_letter_refused=p.dead_letter_refused,
        media=MediaPolicy(h.media_mode, fetcher, needs_bytes=any(c.client.needs_bytes for c in active)),
    )


# --- the composition root: one process of the service, from Settings -----------------------------


@dataclass(frozen=True, slots=True)
class Assembled:
    """The parts of one running process, for its owner (the CLI, tests): the loop, and what can be
    looked at while it runs."""

    service: ModerationService
    progress: Progress
    outputs: Outputs
    watch: Watch
    callbacks: CallbackServer | None

    async def run(self, stop: asyncio.Event) -> None:
        await self.service.run(stop)

    @property
    def processed(self) -> int:
        return self.outputs.processed

    @property
    def callback_url(self) -> str | None:
        return None if self.callbacks is None else self.callbacks.url


@contextlib.asynccontextmanager
async def assembled(
    settings: Settings,
    http: HttpClient,
    stop: asyncio.Event,
    *,
    worker: Worker | None = None,
    codec: Codec | None = None,
    policy: PolicyStore | None = None,
    registry: CheckRegistry | None = None,
) -> AsyncIterator[Assembled]:
    """Every part of one process built from ``settings`` and started, in dependency order; on exit
    each is closed in the reverse order. ``http`` calls the providers (``provider_client``);
    ``worker``: this process's place under ``--workers``; ``codec``: the caller's (default: the one
    the settings ask for, closed here); ``policy``: what ``check_settings`` returned, if the caller
    checked already; ``registry``: the checks there are (default: shipped and installed). Waits for
    the schema registry (until ``stop``) before anything reads a record."""
    worker = worker or Worker()
    registry = registry or default_registry()
    policy = policy or check_settings(settings, registry)
    k, p = settings.kafka, settings.processing
    async with contextlib.AsyncExitStack() as closing:
        if codec is None:
            codec = codec_for(settings)
            closing.callback(codec.close)
        if k.create_topics:
            await asyncio.to_thread(ensure_topics, k, k.all_topics())
        outputs_of = output_schemas(k, shadow=policy.shadow is not None)
        await prepare_outputs(codec, outputs_of, stop, settings.schema_registry.retry_max_delay_s)

        scheduler = Scheduler(
            p.ordering,
            max_records=p.max_in_flight,
            max_bytes=p.max_in_flight_bytes,
            pause_at=p.partition_buffer,
            max_buffered_bytes=p.max_buffered_bytes,
        )
        progress = Progress(scheduler, CommitWatch(p.stall_after_s))
        inputs = [k.input_topic, k.deleted_topic, k.review_decision_topic]
        source = Source(k, inputs, prefetch_bytes=p.max_buffered_bytes)
        closing.callback(source.shutdown)
        closing.push_async_callback(source.in_thread, source.close)  # when the loop never ran
        delivery = delivery_for(settings, progress, source, worker.index)
        await delivery.start()
        closing.push_async_callback(delivery.close)
        relay_sink = Sink(k) if p.delivery == "exactly_once" else delivery.sink  # outside transactions
        if relay_sink is not delivery.sink:
            closing.push_async_callback(relay_sink.close)
        relay_sink.start()
        outputs = Outputs(
            k,
            codec,
            delivery.sink,
            exactly_once=p.delivery == "exactly_once",
            release=progress.release,
            complete=progress.complete,
            current=progress.current,
            fail=progress.fail,
            limit=await asyncio.to_thread(output_limit, k, [k.dlq_topic]),
            shadow=Shadow(policy, registry.fed(Feeds.SIMILARITY)) if policy.shadow else None,
            max_header_count=p.max_header_count,
            max_header_bytes=p.max_header_bytes,
        )
        loop = asyncio.get_running_loop()
        callbacks, tasks = None, None
        if p.async_media:
            callbacks = CallbackServer(
                settings, relay_sink, Correlator(), worker.index, metrics_handler(worker)
            )
            closing.push_async_callback(callbacks.stop)
            tasks = await callbacks.start(loop)
        media_http = media_client(settings)
        closing.push_async_callback(media_http.aclose)
        pipeline = build_pipeline(
            settings, http, tasks, media_http=media_http, policy=policy, registry=registry
        )
        handler = RecordHandler(
            p,
            codec,
            pipeline,
            IndexMaintenance(pipeline.index),
            outputs,
            {k.deleted_topic: "UploadDeleted", k.review_decision_topic: "ReviewDecision"},
            finished=progress.finished,
            spawn=progress.spawn,
            registry_max_delay_s=settings.schema_registry.retry_max_delay_s,
            group=k.group_id,
        )
        source.listen(Partitions(progress, source, delivery, loop, p.revoke_drain_s))
        watch = Watch(settings, progress, worker)
        files = FileWatch()  # the policy files and the secret files: one watch, one SIGHUP
        policies = PolicyReloader(settings, policy, registry, files)
        secrets = SecretFiles(settings, files)
        closing.push_async_callback(watch.stop)
        closing.push_async_callback(files.stop)
        await asyncio.gather(watch.start(), policies.start(), secrets.start())
        await files.start(sighup=True)

        def held_by() -> str | None:
            return pipeline.open_circuit() or ("schema_registry" if handler.registry_down else None)

        service = ModerationService(
            p,
            progress,
            source,
            delivery,
            handler,
            held_by=held_by,
            after_commit=watch.check,
            description={"topic": k.input_topic, "group": k.group_id, "delivery": p.delivery},
        )
        yield Assembled(service, progress, outputs, watch, callbacks)
