"""From settings to providers: which client answers which check."""

from __future__ import annotations

import logging

from consumer.checks.imaging import ImageWorkers
from consumer.checks.limits import AimdLimit, CircuitBreaker, TokenBucket
from consumer.checks.media import MediaFetcher, MediaPolicy
from consumer.checks.pipeline import Checks, Pipeline
from consumer.checks.policy import Policy, load_policy
from consumer.checks.providers import SimilarityIndex
from consumer.checks.providers.hive import (
    HiveClassifier,
    HiveCustomIndex,
    HiveHashMatcher,
    HiveTasks,
    HiveTransport,
)
from consumer.checks.providers.http import ProviderGate
from consumer.checks.providers.huawei import HuaweiImageSearch, HuaweiTransport
from consumer.checks.redaction import register_secret
from consumer.checks.retry import RetryPolicy
from consumer.config import Settings
from consumer.core.records import MediaType
from consumer.operations.callbacks import AsyncTasks
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import AiohttpClient, HttpClient

__all__ = ["build_pipeline", "check_settings", "media_client", "provider_client", "register_secrets"]


_SECRET_CLIENT_CONFIG = (
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
)


def register_secrets(settings: Settings) -> None:
    """Every secret the process holds is redacted from provider messages, logs and verdicts."""
    for check in ("visual", "text", "csam", "index"):
        key = getattr(settings.hive, f"{check}_key")
        if key is not None:
            register_secret(key)
    for secret in (settings.huawei.token, settings.callbacks.token):
        if secret is not None:
            register_secret(secret)
    for name in _SECRET_CLIENT_CONFIG:
        value = settings.kafka.client_config.get(name)
        if value:
            register_secret(value)


def check_settings(settings: Settings) -> Policy:
    """Every secret and choice the configuration needs, read once at start (ConfigError if missing):
    the keys of the checks that run, and the policy, which is returned."""
    on = set(settings.processing.checks)
    for check in ("csam", "visual", "text"):
        if check in on:
            settings.hive.key(check)
    if "similarity" in on and settings.processing.similarity == "hive":
        settings.hive.key("index")
    elif "similarity" in on and settings.processing.similarity == "huawei":
        settings.huawei.auth_token()
    return load_policy(settings.policy_file)


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


def provider_client(settings: Settings) -> HttpClient:
    """The client provider calls use (endpoints from settings): aiohttp, a bounded keep-alive pool."""
    return AiohttpClient(settings.processing.max_in_flight * 2, settings.hive.timeout_s)


def media_client(settings: Settings) -> HttpClient:
    """The client media downloads use: its own pool, and the egress policy on every address."""
    m = settings.media
    return AiohttpClient(
        32,
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
    policy: Policy | None = None,
) -> Pipeline:
    """``http`` calls the providers (endpoints from settings); ``media_http`` downloads media that
    uploads name (default: ``http``, for tests on one mock transport); ``policy``: what
    ``check_settings`` returned (read here when not given)."""
    policy = policy or check_settings(settings)
    register_secrets(settings)
    p, h, m = settings.processing, settings.hive, settings.media
    retry = RetryPolicy(p.retry_attempts, p.retry_base_delay_s, p.retry_max_delay_s)
    fetcher = MediaFetcher(
        media_http or http,
        h.max_upload_bytes,
        m.download_timeout_s,
        egress=egress_policy(settings),
        max_redirects=m.max_redirects,
    )
    media = MediaPolicy(h.media_mode, fetcher)

    gates = {check: _gate(settings, check) for check in ("csam", "visual", "text", "similarity")}

    def hive(check: str, key_name: str) -> HiveTasks:
        transport = HiveTransport(http, h.base_url, h.key(key_name), check, retry, h.timeout_s, gates[check])
        return HiveTasks(transport, version=h.api_version, media=media, tasks=tasks)

    on = set(p.checks)
    csam = hive("csam", "csam") if "csam" in on else None
    visual = hive("visual", "visual") if "visual" in on else None
    similarity: SimilarityIndex | None = None
    if "similarity" in on and p.similarity == "hive":
        similarity = HiveCustomIndex(
            hive("similarity", "index"), asynchronous=h.index_async and tasks is not None
        )
    elif "similarity" in on and p.similarity == "huawei":
        hw = settings.huawei
        transport = HuaweiTransport(
            http,
            hw.base_url,
            hw.project_id,
            hw.instance,
            hw.auth_token(),
            retry,
            hw.timeout_s,
            gate=gates["similarity"],
        )
        workers = ImageWorkers(m.image_workers, max_pixels=m.max_image_pixels)
        similarity = HuaweiImageSearch(transport, fetcher, limit=hw.search_limit, workers=workers)
    if csam is None:
        logging.getLogger("consumer.wiring").warning(
            "the CSAM check is switched off (processing.checks): uploads are not hash-matched; "
            "this is meant for benchmarks only"
        )
    combined = h.csam_endpoint == "combined"
    checks = Checks(
        csam=HiveHashMatcher(csam, combined=combined) if csam else None,
        visual=HiveClassifier(visual) if visual else None,
        text=HiveClassifier(hive("text", "text")) if "text" in on else None,
        similarity=similarity,
        csam_async=HiveHashMatcher(csam, asynchronous=True, combined=combined) if tasks and csam else None,
        visual_async=HiveClassifier(visual, asynchronous=True) if tasks and visual else None,
        async_media=frozenset(MediaType(m) for m in p.async_media) if tasks else frozenset(),
    )
    return Pipeline(
        checks,
        policy,
        deadline_s=p.check_deadline_s,
        async_deadline_s=settings.callbacks.deadline_s,
        cache_size=p.result_cache_size,
        gates={check: gate for check, gate in gates.items() if check in on},
        dead_letter_refused=p.dead_letter_refused,
        media=MediaPolicy(h.media_mode, fetcher, needs_bytes=p.similarity == "huawei"),
        providers={
            check: "huawei" if check == "similarity" and p.similarity == "huawei" else "hive" for check in on
        },
    )
