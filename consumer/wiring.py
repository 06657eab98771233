"""From settings to providers: which client answers which check."""

from __future__ import annotations

import logging

from .callbacks import AsyncTasks
from .config import Settings
from .httpclient import HttpClient
from .limits import AimdLimit, CircuitBreaker, TokenBucket
from .media import MediaFetcher, MediaPolicy
from .pipeline import Checks, Pipeline
from .policy import load_policy
from .providers import SimilarityIndex
from .providers.hive import HiveClassifier, HiveCustomIndex, HiveHashMatcher, HiveTasks, HiveTransport
from .providers.http import ProviderGate
from .providers.huawei import HuaweiImageSearch, HuaweiTransport
from .records import MediaType
from .retry import RetryPolicy

__all__ = ["build_pipeline", "check_settings"]


def check_settings(settings: Settings) -> None:
    """Every secret and choice the configuration needs, read once at start (ConfigError if missing)."""
    for check in ("csam", "visual", "text"):
        settings.hive.key(check)
    if settings.processing.similarity == "hive":
        settings.hive.key("index")
    elif settings.processing.similarity == "huawei":
        settings.huawei.auth_token()
    load_policy(settings.policy_file)


def _gate(settings: Settings, check: str) -> ProviderGate:
    lim = settings.limits
    rate = lim.rate_per_s.get(check)
    return ProviderGate(
        check,
        AimdLimit(float(lim.initial_concurrency), float(lim.min_concurrency), float(lim.max_concurrency)),
        TokenBucket(rate, max(1.0, rate)) if rate else None,
        CircuitBreaker(lim.breaker_threshold, lim.breaker_cooldown_s),
    )


def build_pipeline(settings: Settings, http: HttpClient, tasks: AsyncTasks | None = None) -> Pipeline:
    check_settings(settings)
    p, h = settings.processing, settings.hive
    retry = RetryPolicy(p.retry_attempts, p.retry_base_delay_s, p.retry_max_delay_s)
    fetcher = MediaFetcher(http, h.max_upload_bytes, h.timeout_s)
    media = MediaPolicy(h.media_mode, fetcher)

    gates = {check: _gate(settings, check) for check in ("csam", "visual", "text", "similarity")}

    def hive(check: str, key_name: str) -> HiveTasks:
        transport = HiveTransport(http, h.base_url, h.key(key_name), check, retry, h.timeout_s, gates[check])
        return HiveTasks(transport, version=h.api_version, media=media, tasks=tasks)

    csam, visual = hive("csam", "csam"), hive("visual", "visual")
    similarity: SimilarityIndex | None = None
    if p.similarity == "hive":
        similarity = HiveCustomIndex(
            hive("similarity", "index"), asynchronous=h.index_async and tasks is not None
        )
    elif p.similarity == "huawei":
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
        similarity = HuaweiImageSearch(transport, fetcher, limit=hw.search_limit)
    on = set(p.checks)
    if "csam" not in on:
        logging.getLogger("consumer.wiring").warning(
            "the CSAM check is switched off (processing.checks): uploads are not hash-matched; "
            "this is meant for benchmarks only"
        )
    checks = Checks(
        csam=HiveHashMatcher(csam) if "csam" in on else None,
        visual=HiveClassifier(visual) if "visual" in on else None,
        text=HiveClassifier(hive("text", "text")) if "text" in on else None,
        similarity=similarity if "similarity" in on else None,
        csam_async=HiveHashMatcher(csam, asynchronous=True) if tasks and "csam" in on else None,
        visual_async=HiveClassifier(visual, asynchronous=True) if tasks and "visual" in on else None,
        async_media=frozenset(MediaType(m) for m in p.async_media) if tasks else frozenset(),
    )
    return Pipeline(
        checks,
        load_policy(settings.policy_file),
        deadline_s=p.check_deadline_s,
        async_deadline_s=settings.callbacks.deadline_s,
        cache_size=p.result_cache_size,
        gates={check: gate for check, gate in gates.items() if check in on},
        dead_letter_refused=p.dead_letter_refused,
    )
