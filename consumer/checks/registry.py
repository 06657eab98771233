"""Checks as declarations: one ``CheckSpec`` says what a check is (its name, the media it applies
to, what its answer feeds in the policy, how it is built from settings); the pipeline, the policy
checks and the wiring iterate a ``CheckRegistry`` and name no check themselves.

The shipped checks are declared in ``consumer.checks.builtin`` (whose ``default_registry`` holds
them and the installed ones). Others come from installed packages through the
``moderation_consumer.checks`` entry-point group (each entry point names a ``CheckSpec``), or from
``CheckRegistry.register`` in code that builds the service itself. This module names no check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from consumer.checks.providers import Checked, SimilarityIndex
from consumer.checks.redaction import Redactor
from consumer.core.records import MediaType
from consumer.errors import ConfigError

if TYPE_CHECKING:
    from consumer.callbacks.receiver import AsyncTasks
    from consumer.checks.media import Media, MediaFetcher, MediaPolicy
    from consumer.checks.providers.http import ProviderGate
    from consumer.checks.retry import RetryPolicy
    from consumer.config import Settings
    from consumer.core.records import UploadEvent
    from consumer.policy.decision import Policy
    from consumer.transports.httpclient import HttpClient

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildContext",
    "CheckClient",
    "CheckRegistry",
    "CheckSpec",
    "Feeds",
    "Subject",
]

ENTRY_POINT_GROUP = "moderation_consumer.checks"
VISUAL_MEDIA = frozenset({MediaType.IMAGE, MediaType.GIF, MediaType.VIDEO})


class Feeds(StrEnum):
    """What a check's answer is, and so which part of the policy reads it."""

    HASH_MATCH = "hash_match"  # Checked[CsamAnswer]: a match escalates; its classes read as classification
    CLASSIFICATION = "classification"  # Checked[Sequence[Frame]]: thresholds in policy.classification.<name>
    SIMILARITY = "similarity"  # Checked[Sequence[SimilarityMatch]]: thresholds in policy.similarity


@dataclass(frozen=True, slots=True)
class Subject:
    """What a check looks at: the upload, and its media once prepared (None for TEXT)."""

    upload: UploadEvent
    media: Media | None


CheckCall = Callable[[Subject], Awaitable[Checked[Any]]]


@dataclass(frozen=True, slots=True)
class CheckClient:
    """A check built for one deployment: who answers it and how it is called."""

    provider: str
    call: CheckCall
    call_async: CheckCall | None = None  # media the deployment checks through async tasks (video)
    index: SimilarityIndex | None = None  # a similarity index that review decisions and deletions maintain
    needs_bytes: bool = False  # the provider takes bytes only: URL media is downloaded first


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a check's ``build`` may use. ``options`` is the check's own settings
    (``check_options.<name>``), validated by ``CheckSpec.options``; ``redactor`` holds every secret
    of the deployment: a provider's messages go through it (and its own key with them)."""

    settings: Settings
    http: HttpClient
    fetcher: MediaFetcher
    media: MediaPolicy
    retry: RetryPolicy
    gate: ProviderGate | None
    tasks: AsyncTasks | None
    options: Any = None
    redactor: Redactor = field(default_factory=Redactor)


def _nothing_required(settings: Settings) -> None:
    return None


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check, declared once.

    ``build`` returns the client, or None when the settings switch it off (no similarity provider).
    ``require`` raises ``ConfigError`` at start for a secret or choice the check needs. ``first``
    checks run before the rest and a match of theirs decides alone: nothing else sees the content.
    ``live`` checks are asked for every upload, never answered from the result cache (their source
    changes). ``deadline_s`` overrides ``processing.check_deadline_s``. ``classes``: the class names
    its provider documents, the only ones a policy may threshold (None: any name).
    """

    name: str
    feeds: Feeds
    media_types: frozenset[MediaType]
    build: Callable[[BuildContext], CheckClient | None]
    require: Callable[[Settings], None] = _nothing_required
    options: type[BaseModel] | None = None
    first: bool = False
    live: bool = False
    may_fail_open: bool = True
    gated: bool = True
    deadline_s: float | None = None
    classes: frozenset[str] | None = None
    doc: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise ValueError(f"check name {self.name!r}: lower-case letters, digits and _ only")
        if not self.media_types:
            raise ValueError(f"check {self.name}: applies to no media type")
        if self.first and self.live:
            raise ValueError(f"check {self.name}: a first check's answer is cached, so it cannot be live")

    def read_options(self, settings: Settings) -> Any:
        """The check's own settings, validated (ConfigError naming the first bad field)."""
        raw = settings.check_options.get(self.name, {})
        if self.options is None:
            if raw:
                raise ConfigError(f"check_options.{self.name}", "this check takes no options")
            return None
        try:
            return self.options.model_validate(raw)
        except ValidationError as exc:
            from consumer.config import location, validation_message

            err = exc.errors()[0]
            where = f"check_options.{self.name}.{location(tuple(err['loc']))}".rstrip(".")
            raise ConfigError(where, validation_message(err)) from None


class CheckRegistry:
    """The checks a process knows, in the order they run (``first`` ones ahead of the rest)."""

    def __init__(self, specs: tuple[CheckSpec, ...] = ()) -> None:
        self._specs: dict[str, CheckSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: CheckSpec) -> CheckSpec:
        if spec.name in self._specs or spec.name in {"pipeline", "media", "cache"}:
            raise ValueError(f"a check named {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def copy(self) -> CheckRegistry:
        return CheckRegistry(tuple(self._specs.values()))

    def __iter__(self) -> Iterator[CheckSpec]:
        first = [s for s in self._specs.values() if s.first]
        return iter(first + [s for s in self._specs.values() if not s.first])

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> CheckSpec:
        return self._specs[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def selected(self, names: list[str]) -> list[CheckSpec]:
        """The specs ``processing.checks`` names, in running order (ConfigError for an unknown one)."""
        unknown = [n for n in names if n not in self._specs]
        if unknown:
            known = ", ".join(self._specs)
            raise ConfigError("processing.checks", f"unknown check {unknown[0]!r} (registered: {known})")
        chosen = set(names)
        return [spec for spec in self if spec.name in chosen]

    def fed(self, feeds: Feeds) -> frozenset[str]:
        """The names of the checks whose answers are ``feeds``."""
        return frozenset(spec.name for spec in self if spec.feeds is feeds)

    def check_policy(self, policy: Policy, where: str = "") -> None:
        """A policy names only registered checks and the classes each documents, lets no check
        fail open (or go unrun) that may not; ConfigError naming the setting at ``where``."""
        at = f"policy {where}"
        for check, classes in policy.classification.items():
            spec = self._specs.get(check)
            if spec is None:
                raise ConfigError(f"{at}classification.{check}", f"no check named {check!r} is registered")
            if spec.feeds is Feeds.SIMILARITY:
                raise ConfigError(f"{at}classification.{check}", f"{check} has no classes: see similarity")
            unknown = sorted(set(classes) - spec.classes) if spec.classes is not None else []
            if unknown:
                known = ", ".join(sorted(spec.classes or ()))
                raise ConfigError(
                    f"{at}classification.{check}.{unknown[0]}", f"{check} has no such class (it has: {known})"
                )
        for name in sorted(policy.fail_open):
            if name not in self._specs:
                raise ConfigError(f"{at}fail_open", f"no check named {name!r} is registered")
            if not self._specs[name].may_fail_open:
                raise ConfigError(f"{at}fail_open", f"{name} can never fail open")
        if policy.checks is not None:
            for name in sorted(policy.checks):
                if name not in self._specs:
                    raise ConfigError(f"{at}checks", f"no check named {name!r} is registered")
            for spec in self:
                if not spec.may_fail_open and spec.name not in policy.checks:
                    raise ConfigError(f"{at}checks", f"{spec.name} always runs (it can never fail open)")

    def add_installed(self) -> CheckRegistry:
        """Registers the checks installed packages declare (entry points); returns itself."""
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                spec = point.load()
            except Exception as exc:  # a broken plugin is a configuration error, not a traceback
                raise ConfigError(f"entry point {point.name}", f"cannot load {point.value} ({exc})") from None
            if not isinstance(spec, CheckSpec):
                raise ConfigError(f"entry point {point.name}", f"{point.value} is not a CheckSpec")
            try:
                self.register(spec)
            except ValueError as exc:
                raise ConfigError(f"entry point {point.name}", str(exc)) from None
        return self
