"""From settings to providers: which client answers which check."""

from __future__ import annotations

import logging

from pydantic import BaseModel, SecretStr

from consumer.callbacks.receiver import AsyncTasks
from consumer.core.limits import AimdLimit, CircuitBreaker, TokenBucket
from consumer.checks.builtin import default_registry
from consumer.checks.media import MediaFetcher, MediaPolicy
from consumer.checks.pipeline import ActiveCheck, Pipeline
from consumer.checks.providers.http import ProviderGate
from consumer.checks.redaction import register_secret
from consumer.checks.registry import BuildContext, CheckRegistry
from consumer.checks.retry import RetryPolicy
from consumer.config import Settings
from consumer.core.records import MediaType
from consumer.errors import ConfigError
from consumer.policy.decision import Policy
from consumer.policy.tenants import PolicySet, PolicyStore, load_policies
from consumer.transports.egress import EgressPolicy
from consumer.transports.httpclient import AiohttpClient, HttpClient

__all__ = [
    "build_pipeline",
    "check_settings",
    "media_client",
    "provider_client",
    "register_option_secrets",
    "register_secrets",
]


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
    policy: Policy | PolicySet | PolicyStore | None = None,
    registry: CheckRegistry | None = None,
) -> Pipeline:
    """``http`` calls the providers (endpoints from settings); ``media_http`` downloads media that
    uploads name (default: ``http``, for tests on one mock transport); ``policy``: what
    ``check_settings`` returned (read here when not given); ``registry``: the checks there are
    (default: the shipped ones and those installed packages declare)."""
    registry = registry or default_registry()
    policy = policy or check_settings(settings, registry)
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
    active: list[ActiveCheck] = []
    for spec in registry.selected(p.checks):
        gate = _gate(settings, spec.name) if spec.gated else None
        options = spec.read_options(settings)
        register_option_secrets(options)
        context = BuildContext(settings, http, fetcher, media, retry, gate, tasks, options)
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


def register_option_secrets(options: object) -> None:
    """A check's own secrets (``SecretStr`` options) are redacted like the service's."""
    if isinstance(options, BaseModel):
        for name in type(options).model_fields:
            value = getattr(options, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                register_secret(value)
