"""The checks the service ships: CSAM hash matching, visual and text classification (Hive), and
similarity against a custom index (Hive, or Huawei ImageSearch). One declaration each; and the
registry a deployment starts from: these, then the checks installed packages declare."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from consumer.checks.imaging import ImageWorkers
from consumer.checks.providers.hive import (
    HiveClassifier,
    HiveCustomIndex,
    HiveHashMatcher,
    HiveTasks,
    HiveTransport,
)
from consumer.checks.providers.huawei import HuaweiImageSearch, HuaweiTransport
from consumer.checks.registry import (
    VISUAL_MEDIA,
    BuildContext,
    CheckClient,
    CheckRegistry,
    CheckSpec,
    Feeds,
    Subject,
)
from consumer.core.records import MediaType
from consumer.errors import PermanentError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from consumer.checks.media import Media
    from consumer.config import Settings
    from consumer.core.secrets import RotatingSecret

__all__ = [
    "BUILTIN_CHECKS",
    "CSAM",
    "CSAM_CLASSES",
    "SIMILARITY",
    "TEXT",
    "TEXT_CLASSES",
    "VISUAL",
    "VISUAL_CLASSES",
    "default_registry",
]

# The class names Hive documents, head by head (each head's scores sum to 1); a policy may
# threshold only these. Visual: the heads of Hive's visual moderation overview (NSFW, guns) and of
# its violence and drugs class descriptions; text: the seed's async task sample output; CSAM: the
# combined endpoint's classifier (DESIGN.md, the hash-matching document).
VISUAL_CLASSES = frozenset(
    {
        *("general_nsfw", "general_suggestive", "general_not_nsfw_not_suggestive"),
        *("gun_in_hand", "animated_gun", "gun_not_in_hand", "no_gun"),
        *("very_bloody", "a_little_bloody", "no_blood"),
        *("yes_drugs", "no_drugs"),
    }
)
TEXT_CLASSES = frozenset(
    {
        "sexual",
        "suggestive",
        "no_sexual",
        "violence",
        "no_violence",
        "self_harm",
        "no_self_harm",
        "yes_spam",
        "no_spam",
    }
)
CSAM_CLASSES = frozenset({"csam", "pornography", "other"})


def _live(settings: Settings, setting: str, checked: SecretStr) -> SecretStr | RotatingSecret:
    """The holder the transport reads per request (a file's new value replaces it), else ``checked``."""
    return settings.live_secret(setting) or checked


def _hive(ctx: BuildContext, check: str, key: str) -> HiveTasks:
    h = ctx.settings.hive
    transport = HiveTransport(
        ctx.http,
        h.base_url,
        _live(ctx.settings, f"hive.{key}_key", h.key(key)),
        check,
        ctx.retry,
        h.timeout_s,
        ctx.gate,
        ctx.redactor,
    )
    return HiveTasks(transport, version=h.api_version, media=ctx.media, tasks=ctx.tasks)


def _media(subject: Subject) -> Media:
    if subject.media is None:  # the pipeline prepares media for every check of a media type
        raise PermanentError(f"{subject.upload.media_type} upload without media", check="pipeline")
    return subject.media


def _build_csam(ctx: BuildContext) -> CheckClient:
    tasks = _hive(ctx, "csam", "csam")
    combined = ctx.settings.hive.csam_endpoint == "combined"
    matcher = HiveHashMatcher(tasks, combined=combined)
    later = HiveHashMatcher(tasks, asynchronous=True, combined=combined) if ctx.tasks else None
    return CheckClient(
        "hive",
        lambda s: matcher.match(_media(s)),
        None if later is None else (lambda s: later.match(_media(s))),
    )


def _build_visual(ctx: BuildContext) -> CheckClient:
    tasks = _hive(ctx, "visual", "visual")
    classifier = HiveClassifier(tasks)
    later = HiveClassifier(tasks, asynchronous=True) if ctx.tasks else None
    return CheckClient(
        "hive",
        lambda s: classifier.classify(_media(s)),
        None if later is None else (lambda s: later.classify(_media(s))),
    )


def _text_of(subject: Subject) -> str:
    if not subject.upload.text:
        raise PermanentError("TEXT upload without text", check="pipeline")
    return subject.upload.text


def _build_text(ctx: BuildContext) -> CheckClient:
    classifier = HiveClassifier(_hive(ctx, "text", "text"))
    return CheckClient("hive", lambda s: classifier.classify(_text_of(s)))


def _build_similarity(ctx: BuildContext) -> CheckClient | None:
    provider = ctx.settings.processing.similarity
    if provider == "hive":
        h = ctx.settings.hive
        index = HiveCustomIndex(
            _hive(ctx, "similarity", "index"), asynchronous=h.index_async and ctx.tasks is not None
        )
        return CheckClient("hive", lambda s: index.query(_media(s), s.upload.tenant_id), index=index)
    if provider == "huawei":
        hw, m = ctx.settings.huawei, ctx.settings.media
        transport = HuaweiTransport(
            ctx.http,
            hw.base_url,
            hw.project_id,
            hw.instance,
            _live(ctx.settings, "huawei.token", hw.auth_token()),
            ctx.retry,
            hw.timeout_s,
            gate=ctx.gate,
            redactor=ctx.redactor,
        )
        workers = ImageWorkers(m.image_workers, max_pixels=m.max_image_pixels)
        search = HuaweiImageSearch(transport, ctx.fetcher, limit=hw.search_limit, workers=workers)
        return CheckClient(
            "huawei", lambda s: search.query(_media(s), s.upload.tenant_id), index=search, needs_bytes=True
        )
    return None


def _hive_key(name: str) -> Callable[[Settings], None]:
    def require(settings: Settings) -> None:
        settings.hive.key(name)

    return require


def _require_similarity(settings: Settings) -> None:
    if settings.processing.similarity == "hive":
        settings.hive.key("index")
    elif settings.processing.similarity == "huawei":
        settings.huawei.auth_token()


CSAM = CheckSpec(
    "csam",
    Feeds.HASH_MATCH,
    VISUAL_MEDIA,
    _build_csam,
    require=_hive_key("csam"),
    first=True,
    may_fail_open=False,
    classes=CSAM_CLASSES,
    doc="known-CSAM hash matching (Thorn through Hive); a match escalates and ends the upload's checks",
)
VISUAL = CheckSpec(
    "visual",
    Feeds.CLASSIFICATION,
    VISUAL_MEDIA,
    _build_visual,
    require=_hive_key("visual"),
    classes=VISUAL_CLASSES,
    doc="Hive visual moderation classes (peak over video frames)",
)
TEXT = CheckSpec(
    "text",
    Feeds.CLASSIFICATION,
    frozenset({MediaType.TEXT}),
    _build_text,
    require=_hive_key("text"),
    classes=TEXT_CLASSES,
    doc="Hive text moderation classes",
)
SIMILARITY = CheckSpec(
    "similarity",
    Feeds.SIMILARITY,
    frozenset({MediaType.IMAGE}),
    _build_similarity,
    require=_require_similarity,
    live=True,
    doc="matches in the tenant's custom index (Hive, or Huawei ImageSearch: processing.similarity)",
)
BUILTIN_CHECKS = (CSAM, VISUAL, TEXT, SIMILARITY)


def default_registry() -> CheckRegistry:
    """The shipped checks, then those installed packages declare (entry points)."""
    return CheckRegistry(BUILTIN_CHECKS).add_installed()
