"""Provider keys and registry credentials given as files are re-read when the files change
(``runtime.secrets`` on the shared ``transports.filewatch``), without a restart: the next provider
call sends the new value, the redactor hides it (the old one too), the registry codec asks with a
new client. A file that cannot be read or holds no valid secret keeps the old value, with one log
line naming the setting (never the value) and a refusal counted. Secret files are outside bytes:
bounded, one trailing line break dropped, control characters refused."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from consumer.checks.providers.hive import HiveTasks, HiveTransport
from consumer.checks.providers.huawei import HuaweiTransport
from consumer.checks.redaction import MASK, Redactor, redactor_for
from consumer.checks.retry import RetryPolicy
from consumer.config import ROTATING_SECRETS, Settings, load_settings
from consumer.core.secrets import MAX_SECRET_FILE_BYTES, RotatingSecret, secret_text
from consumer.errors import ConfigError, PermanentError, SerializationError, UnreadableFile
from consumer.policy.reload import PolicyReloader
from consumer.policy.tenants import PolicyStore, load_policies
from consumer.runtime.secrets import SecretFiles
from consumer.schema_registry import RegistryCodec, codec_for
from consumer.telemetry import metrics
from consumer.transports.filewatch import FileWatch
from consumer.transports.httpclient import HttpxClient
from moderation_devtools.stack import wait_until_async

OLD, NEW = "old-visual-key-1111", "new-visual-key-2222"


def reloads(setting: str, outcome: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "moderation_secret_reloads_total", {"setting": setting, "outcome": outcome}
    )
    return sample or 0.0


async def until(condition: Callable[[], bool]) -> bool:
    """True once ``condition`` holds, False after 10 s (the shared wait, polling every 10 ms)."""
    return await wait_until_async(condition, 10.0, poll_s=0.01)


class SecretDir:
    """A directory laid out as the kubelet mounts a Secret: ``<name> -> ..data/<name>``, ``..data``
    a symlink to a timestamped directory, swapped whole by ``publish``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def publish(self, **files: bytes) -> None:
        self.generation += 1
        target = self.root / f"..2026_{self.generation:04d}"
        target.mkdir()
        for name, data in files.items():
            (target / name).write_bytes(data)
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        staged = self.root / "..data_tmp"
        staged.symlink_to(target.name)
        staged.replace(self.root / "..data")  # the atomic swap

    def path(self, name: str) -> Path:
        return self.root / name


@pytest.fixture
async def watching() -> AsyncIterator[Callable[[Settings], SecretFiles]]:
    """watching(settings) -> SecretFiles, started on its own watch; stopped at the end."""
    started: list[SecretFiles] = []

    def start(settings: Settings) -> SecretFiles:
        files = SecretFiles(settings)
        started.append(files)
        return files

    yield start
    for files in started:
        await files.stop()


# --- the bytes of a secret file ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"key", "key"),
        (b"key\n", "key"),  # echo, editors
        (b"key\r\n", "key"),
        (b"\xef\xbb\xbfkey\n", "key"),  # a BOM
        (b"user:pass word ", "user:pass word "),  # spaces are a value's own
        ("clé-ünïcode".encode(), "clé-ünïcode"),
    ],
)
def test_a_secret_file_drops_one_trailing_line_break(data: bytes, value: str) -> None:
    assert secret_text(data) == value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"key\n\n", "control character (U+000A)"),  # one line break only
        (b"ke\ny", "control character (U+000A)"),  # a forged header or log line
        (b"key\r", "control character (U+000D)"),
        (b"k\x00ey", "control character (U+0000)"),
        (b"\x1b[31mkey", "control character (U+001B)"),
        (b"key\x7f", "control character (U+007F)"),
        ("key\u0085".encode(), "control character (U+0085)"),
        ("key\u2028x".encode(), "control character (U+2028)"),
        (b"key\xff\xfe", "not UTF-8"),
        (b"k" * (MAX_SECRET_FILE_BYTES + 1), "over the 65536-byte limit"),
    ],
)
def test_hostile_secret_bytes_are_refused_without_quoting_them(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile) as caught:
        secret_text(data)
    assert reason in str(caught.value)
    assert "key" not in str(caught.value) and "kkkk" not in str(caught.value)


def test_a_key_file_with_a_control_character_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "csam.key"
    path.write_bytes(b"secret-one\nsecret-two\n")
    with pytest.raises(ConfigError, match=r"hive\.csam_key_file .*control character") as caught:
        load_settings(hive={"csam_key_file": str(path)})
    assert "secret-" not in str(caught.value)


def test_the_holder_tells_its_subscribers_and_hides_its_value() -> None:
    secret = RotatingSecret("hive.visual_key", OLD)
    heard: list[str] = []

    def broken(_: str) -> None:
        raise RuntimeError("a subscriber that fails")

    secret.subscribe(broken)
    secret.subscribe(heard.append)
    assert not secret.replace(OLD) and secret.version == 0
    with pytest.raises(RuntimeError):
        secret.replace(NEW)
    assert secret.current() == NEW and heard == [NEW]  # told although the first one failed
    assert OLD not in repr(secret) and NEW not in repr(secret)


def test_one_holder_per_setting_and_none_for_an_unset_one(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(OLD + "\n")
    settings = load_settings(hive={"visual_key_file": str(tmp_path / "k"), "text_key": "text-key-1"})
    assert settings.live_secret("hive.visual_key") is settings.live_secret("hive.visual_key")
    assert settings.live_secret("hive.visual_key").current() == OLD  # type: ignore[union-attr]
    assert settings.live_secret("hive.csam_key") is None
    assert settings.secret_files() == {"hive.visual_key": tmp_path / "k"}
    assert set(ROTATING_SECRETS) >= {"hive.index_key", "huawei.token", "schema_registry.bearer_token"}
    with pytest.raises(KeyError):
        settings.live_secret("callbacks.token")  # part of callback URLs in flight: read at start only


# --- re-reading the files ----------------------------------------------------------------------


async def test_a_secret_symlink_swap_replaces_the_key_and_is_counted(
    tmp_path: Path, watching: Callable[[Settings], SecretFiles], caplog: pytest.LogCaptureFixture
) -> None:
    mount = SecretDir(tmp_path)
    mount.publish(visual=f"{OLD}\n".encode())
    settings = load_settings(
        hive={"visual_key_file": str(mount.path("visual"))}, secret_reload_interval_s=0.02
    )
    files = watching(settings)
    secret = files.secrets["hive.visual_key"]
    applied = reloads("hive.visual_key", "applied")
    with caplog.at_level(logging.INFO, logger="consumer.secrets"):
        await files.start()
        assert secret.current() == OLD
        mount.publish(visual=f"{NEW}\n".encode())
        assert await until(lambda: secret.current() == NEW)
    assert reloads("hive.visual_key", "applied") == applied + 1
    lines = [r.getMessage() for r in caplog.records if r.name == "consumer.secrets"]
    assert any("hive.visual_key replaced from hive.visual_key_file (file changed)" in line for line in lines)
    assert not any(OLD in line or NEW in line for line in lines)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda mount: mount.publish(visual=b""),  # empty
        lambda mount: mount.publish(visual=b"\n"),
        lambda mount: mount.publish(visual=b"new-key\x00\n"),  # a control character
        lambda mount: mount.publish(visual=b"n" * (MAX_SECRET_FILE_BYTES + 1)),  # over the bound
        lambda mount: mount.publish(visual=b"\xff\xfe\xfd"),  # not UTF-8
        lambda mount: (mount.root / "..data").unlink(),  # gone
        lambda mount: _fifo(mount),  # opening it would block on a writer forever
        lambda mount: _device(mount),  # endless
    ],
    ids=["empty", "newline", "control", "huge", "binary", "gone", "fifo", "dev-zero"],
)
async def test_an_unusable_file_keeps_the_old_key_with_one_line_and_a_refusal(
    tmp_path: Path,
    watching: Callable[[Settings], SecretFiles],
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[[SecretDir], None],
) -> None:
    mount = SecretDir(tmp_path)
    mount.publish(visual=f"{OLD}\n".encode())
    settings = load_settings(hive={"visual_key_file": str(mount.path("visual"))}, secret_reload_interval_s=0)
    files = watching(settings)
    await files.start()
    secret = files.secrets["hive.visual_key"]
    refused = reloads("hive.visual_key", "refused")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="consumer.secrets"):
        spoil(mount)
        started = time.monotonic()
        files.request()  # SIGHUP
        assert await until(lambda: reloads("hive.visual_key", "refused") == refused + 1)
        assert time.monotonic() - started < 5
    assert secret.current() == OLD and secret.version == 0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "consumer.secrets"]
    assert line.startswith("hive.visual_key_file ") and "the value in force stays" in line
    assert OLD not in line and "new-key" not in line and "nnnn" not in line
    mount.publish(visual=f"{NEW}\n".encode())  # a good file later is applied
    files.request()
    assert await until(lambda: secret.current() == NEW)


def _fifo(mount: SecretDir) -> None:
    mount.generation += 1
    target = mount.root / f"..fifo_{mount.generation}"
    target.mkdir()
    os.mkfifo(target / "visual")
    staged = mount.root / "..data_tmp"
    staged.symlink_to(target.name)
    staged.replace(mount.root / "..data")


def _device(mount: SecretDir) -> None:
    mount.generation += 1
    target = mount.root / f"..dev_{mount.generation}"
    target.mkdir()
    (target / "visual").symlink_to("/dev/zero")
    staged = mount.root / "..data_tmp"
    staged.symlink_to(target.name)
    staged.replace(mount.root / "..data")


async def test_the_same_value_again_is_counted_unchanged(
    tmp_path: Path, watching: Callable[[Settings], SecretFiles]
) -> None:
    (tmp_path / "token").write_text("huawei-token-1\n")
    settings = load_settings(huawei={"token_file": str(tmp_path / "token")}, secret_reload_interval_s=0)
    files = watching(settings)
    unchanged = reloads("huawei.token", "unchanged")
    await files.start()  # read once more at start
    (tmp_path / "token").write_text("huawei-token-1")  # rewritten, the same value
    files.request()
    assert await until(lambda: reloads("huawei.token", "unchanged") == unchanged + 2)
    assert files.secrets["huawei.token"].version == 0


async def test_one_watch_one_sighup_for_the_policy_and_the_secrets(tmp_path: Path) -> None:
    """The wiring shares one ``FileWatch``: a request (SIGHUP) reads the policy and the keys again."""
    (tmp_path / "policy.yaml").write_text("version: p1\n")
    (tmp_path / "key").write_text(OLD)
    settings = load_settings(
        policy_file=str(tmp_path / "policy.yaml"),
        hive={"visual_key_file": str(tmp_path / "key")},
        policy_reload_interval_s=0,
        secret_reload_interval_s=0,
    )
    from consumer.checks.builtin import default_registry

    registry = default_registry()
    store = PolicyStore(load_policies(settings.policy_file, registry), None)
    files = FileWatch()
    policies, secrets = PolicyReloader(settings, store, registry, files), SecretFiles(settings, files)
    await asyncio.gather(policies.start(), secrets.start())
    await files.start(sighup=False)
    try:
        (tmp_path / "policy.yaml").write_text("version: p2\n")
        (tmp_path / "key").write_text(NEW)
        files.request()
        assert await until(
            lambda: store.live.version == "p2" and secrets.secrets["hive.visual_key"].current() == NEW
        )
    finally:
        await files.stop()


# --- the next call uses it -----------------------------------------------------------------------


async def test_the_next_hive_call_sends_the_new_key_and_both_are_redacted() -> None:
    secret = RotatingSecret("hive.visual_key", OLD)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        sent = request.headers["authorization"].split()[1]  # echoes what it was sent, and the old key
        return httpx.Response(403, json={"return_code": 403, "message": f"wrong keys: {sent} {OLD}"})

    redactor = Redactor()
    tasks = HiveTasks(
        HiveTransport(
            HttpxClient(httpx.MockTransport(handler)),
            "http://hive.test",
            secret,
            "visual",
            RetryPolicy(1),
            redactor=redactor,
        )
    )
    for key in (OLD, NEW):
        if key == NEW:
            secret.replace(NEW)
        with pytest.raises(PermanentError) as caught:
            await tasks.submit("/api/v1/task", "some text")
        assert seen[-1] == f"token {key}"
        assert OLD not in str(caught.value) and NEW not in str(caught.value)
    assert redactor.redact(f"{OLD} {NEW}") == f"{MASK} {MASK}"


async def test_the_next_huawei_call_sends_the_new_token() -> None:
    secret = RotatingSecret("huawei.token", "huawei-token-old")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-auth-token"])
        return httpx.Response(200, json={"result": []})

    transport = HuaweiTransport(
        HttpxClient(httpx.MockTransport(handler)), "http://huawei.test", "p", "i", secret, RetryPolicy(1)
    )
    await transport.call("POST", "/search", {})
    secret.replace("huawei-token-new")
    await transport.call("POST", "/search", {})
    assert seen == ["huawei-token-old", "huawei-token-new"]
    assert transport.redactor.redact("huawei-token-new huawei-token-old") == f"{MASK} {MASK}"


async def test_a_plain_key_still_works() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(403, json={"return_code": 403, "message": "no"})

    transport = HiveTransport(
        HttpxClient(httpx.MockTransport(handler)), "http://h.test", SecretStr(OLD), "text", RetryPolicy(1)
    )
    with pytest.raises(PermanentError):
        await HiveTasks(transport).submit("/api/v1/task", "x")
    assert seen == [f"token {OLD}"]


async def test_the_settings_redactor_hides_a_rotated_key(
    tmp_path: Path, watching: Callable[[Settings], SecretFiles]
) -> None:
    (tmp_path / "index").write_text(OLD)
    settings = load_settings(hive={"index_key_file": str(tmp_path / "index")}, secret_reload_interval_s=0)
    redactor = redactor_for(settings)
    files = watching(settings)
    await files.start()
    (tmp_path / "index").write_text(NEW)
    files.request()
    assert await until(lambda: files.secrets["hive.index_key"].current() == NEW)
    assert redactor.redact(f"echo {OLD} and {NEW}") == f"echo {MASK} and {MASK}"


# --- the schema registry's credentials ---------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str | None]

    def do_GET(self) -> None:  # the base class's name
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error_code": 40403, "message": "Schema not found"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recording_registry() -> Iterator[tuple[str, list[str | None]]]:
    """A real HTTP server answering every GET 404 (no such schema), keeping each Authorization."""
    seen: list[str | None] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _framed(schema_id: int) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"


@pytest.mark.parametrize(
    ("field", "extra", "old", "new", "header"),
    [
        ("basic_auth_user_info", {}, "svc:old-password", "svc:new-password", "Basic"),
        ("bearer_token", {"bearer_logical_cluster": "lsrc-1"}, "bearer-old-1", "bearer-new-2", "Bearer"),
    ],
)
async def test_rotated_registry_credentials_are_used_by_the_next_lookup(
    tmp_path: Path,
    watching: Callable[[Settings], SecretFiles],
    recording_registry: tuple[str, list[str | None]],
    field: str,
    extra: dict[str, str],
    old: str,
    new: str,
    header: str,
) -> None:
    """The registry client is built again with the new credentials (its lookups ask with them);
    what the codec writes was taught at start and never asks."""
    url, seen = recording_registry
    (tmp_path / "credential").write_text(old + "\n")
    settings = load_settings(
        schema_registry={"url": url, f"{field}_file": str(tmp_path / "credential"), **extra},
        secret_reload_interval_s=0,
    )
    redactor = redactor_for(settings)
    codec = codec_for(settings)
    assert isinstance(codec, RegistryCodec)
    setting = f"schema_registry.{field}"
    applied = reloads(setting, "applied")
    try:
        files = watching(settings)
        await files.start()
        with pytest.raises(SerializationError, match="unknown"):
            await asyncio.to_thread(codec.resolve, _framed(1), "UploadEvent", topic="uploads")
        (tmp_path / "credential").write_text(new + "\n")
        files.request()
        assert await until(lambda: reloads(setting, "applied") == applied + 1)
        with pytest.raises(SerializationError, match="unknown"):
            await asyncio.to_thread(codec.resolve, _framed(2), "UploadEvent", topic="uploads")
    finally:
        codec.close()
    sent = [h.split(" ", 1) for h in seen if h]
    assert {scheme for scheme, _ in sent} == {header}
    values = [base64.b64decode(v).decode() if header == "Basic" else v for _, v in sent]
    assert values[0] == old and values[-1] == new
    assert redactor.redact(f"{old} {new}") == f"{MASK} {MASK}"
