"""Schema administration, the library of ``schemas register`` and ``schemas check``: the shipped
Avro schemas against a schema registry.

``register`` sets each subject's compatibility level (``schema_registry.compatibility``, BACKWARD by
default) and registers the shipped schema under it; run it once per release, before the service
(whose ``auto_register`` is off outside the demo). ``check`` registers nothing: it asks the registry
whether each shipped schema may follow what the subject holds under the subject's level, the step
a deploy pipeline runs before rolling a new version out.

Each yields one ``Outcome`` per subject: ``ok``, ``refused`` (incompatible, or not a schema the
registry can parse) or ``error`` (the registry unreachable, or an answer we cannot act on; nothing
follows an error).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from consumer.config import Settings
from consumer.errors import ConfigError, UnreadableFile
from consumer.schema_registry import UNREACHABLE, input_schemas, output_schemas, registry_client, subject_for
from consumer.serde import AvroCodec
from consumer.settings_sections import KafkaSettings, os_reason, read_text

__all__ = ["Outcome", "Result", "SubjectPlan", "check", "plan", "register", "topic_schemas"]

_NOT_FOUND = 404
_CONFLICT = 409
_UNPROCESSABLE = 422


class Outcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one subject; ``text`` names it (never a credential)."""

    outcome: Outcome
    text: str


@dataclass(frozen=True, slots=True)
class SubjectPlan:
    """One subject and the shipped schema that belongs under it."""

    subject: str
    record: str
    topics: tuple[str, ...]
    schema: Schema


def topic_schemas(kafka: KafkaSettings) -> dict[str, str]:
    """Every topic the service reads or writes -> its record name."""
    return {**input_schemas(kafka), **output_schemas(kafka)}


def plan(settings: Settings, schema_dir: Path | None = None) -> list[SubjectPlan]:
    """The subjects of our topics under the configured naming strategy (several topics share one
    subject under the record strategy) with the schemas of ``schema_dir`` (default: the shipped ones)."""
    if schema_dir is not None:
        _check_schema_files(schema_dir)
    codec = AvroCodec(schema_dir)
    strategy = settings.schema_registry.subject_name_strategy
    topics_of: dict[tuple[str, str], list[str]] = {}
    for topic, name in topic_schemas(settings.kafka).items():
        subject = subject_for(strategy, topic, codec.full_name(name))
        topics_of.setdefault((subject, name), []).append(topic)
    return [
        SubjectPlan(subject, name, tuple(topics), Schema(json.dumps(codec.raw(name)), "AVRO"))
        for (subject, name), topics in sorted(topics_of.items())
    ]


MAX_SCHEMA_FILE_BYTES = 1 << 20  # the shipped schemas are a few KB each


def _check_schema_files(schema_dir: Path) -> None:
    """A candidate schema directory is outside input: each ``.avsc`` (and ``history/*.avsc``) must be
    a regular file of bounded size holding JSON of bounded depth, before the codec reads it whole.
    ConfigError naming ``--schema-dir`` (never the contents) otherwise."""
    for path in sorted([*schema_dir.glob("*.avsc"), *(schema_dir / "history").glob("*.avsc")]):
        try:
            text = read_text(path, MAX_SCHEMA_FILE_BYTES)
            json.loads(text)
        except OSError as exc:
            raise ConfigError("--schema-dir", f"cannot read {path}: {os_reason(exc)}") from None
        except UnreadableFile as exc:
            raise ConfigError("--schema-dir", f"cannot read {path}: {exc}") from None
        except ValueError:
            raise ConfigError("--schema-dir", f"{path} is not JSON") from None
        except RecursionError:
            raise ConfigError("--schema-dir", f"{path} is not JSON: nested too deeply") from None


def _client(settings: Settings) -> SchemaRegistryClient:
    if settings.schema_registry.url is None:
        raise ConfigError("schema_registry.url", "is needed to register or check schemas")
    return registry_client(settings.schema_registry)


def _failure(exc: Exception) -> str:
    if isinstance(exc, SchemaRegistryError):
        return f"HTTP {exc.http_status_code} ({exc.error_code}): {exc.error_message[:300]}"
    return f"unreachable ({type(exc).__name__})"


def register(settings: Settings, *, schema_dir: Path | None = None) -> Iterator[Result]:
    """Set each subject's compatibility level, then register the shipped schema under it."""
    level = settings.schema_registry.compatibility
    with _client(settings) as client:
        for item in plan(settings, schema_dir):
            try:
                client.set_compatibility(item.subject, level)
                schema_id = client.register_schema(item.subject, item.schema)
            except SchemaRegistryError as exc:
                if exc.http_status_code not in (_CONFLICT, _UNPROCESSABLE):
                    yield Result(Outcome.ERROR, f"{item.subject}: {_failure(exc)}")
                    return
                yield Result(
                    Outcome.REFUSED,
                    f"{item.subject}: {item.record} is not {level}-compatible: {_failure(exc)}",
                )
                continue
            except UNREACHABLE as exc:
                yield Result(
                    Outcome.ERROR, f"schema registry at {settings.schema_registry.url}: {_failure(exc)}"
                )
                return
            yield Result(
                Outcome.OK, f"{item.subject}: {item.record} is schema id {schema_id}, compatibility {level}"
            )


def check(settings: Settings, *, schema_dir: Path | None = None) -> Iterator[Result]:
    """Whether each shipped schema may be registered under its subject's compatibility level."""
    with _client(settings) as client:
        for item in plan(settings, schema_dir):
            try:
                compatible = client.test_compatibility(item.subject, item.schema)
                level = client.get_compatibility(item.subject)
            except SchemaRegistryError as exc:
                if exc.http_status_code == _NOT_FOUND:
                    yield Result(
                        Outcome.OK, f"{item.subject}: not registered yet ({item.record} will be version 1)"
                    )
                    continue
                if exc.http_status_code == _UNPROCESSABLE:  # not a schema the registry can parse
                    yield Result(Outcome.REFUSED, f"{item.subject}: {_failure(exc)}")
                    continue
                yield Result(Outcome.ERROR, f"{item.subject}: {_failure(exc)}")
                return
            except UNREACHABLE as exc:
                yield Result(
                    Outcome.ERROR, f"schema registry at {settings.schema_registry.url}: {_failure(exc)}"
                )
                return
            if compatible:
                yield Result(
                    Outcome.OK, f"{item.subject}: {item.record} is {level}-compatible with what it holds"
                )
            else:
                yield Result(
                    Outcome.REFUSED,
                    f"{item.subject}: {item.record} is not {level}-compatible with what it holds",
                )
