"""One error tree: every exception class of the package is a ModerationError, each has its place in
the tree drawn in ``consumer/errors.py``, and the command line maps each branch to the exit code
its ``--help`` documents."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import httpx
import pytest

import consumer
from consumer import errors
from consumer.cli.main import _EPILOG, EXIT_CODES, exit_code, main
from consumer.errors import ModerationError
from consumer.policy.tenants import DEFAULT_POLICY

# Module-private signals that never leave their module, each with the reason it is not in the tree.
OUTSIDE_THE_TREE = {
    "consumer.config._Refused": "PyYAML's own composer error, raised and caught inside the YAML loader",
}


def _package_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(consumer.__path__, "consumer."):
        if module.name == "consumer.__main__":  # runs the command line when imported
            continue
        loaded = importlib.import_module(module.name)
        for _, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.name:
                found[f"{module.name}.{value.__qualname__}"] = value
    return found


def _tree() -> list[type[ModerationError]]:
    seen: list[type[ModerationError]] = []
    todo = [ModerationError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += [c for c in cls.__subclasses__() if c.__module__.startswith("consumer.")]
    return seen


def test_every_exception_class_of_the_package_is_a_moderation_error() -> None:
    found = _package_exceptions()
    assert "consumer.errors.ModerationError" in found
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, ModerationError))
    assert strays == sorted(OUTSIDE_THE_TREE), strays


def test_every_exception_class_is_defined_in_errors_and_drawn_in_its_tree() -> None:
    found = _package_exceptions()
    elsewhere = sorted(
        n for n, c in found.items() if issubclass(c, ModerationError) and c.__module__ != "consumer.errors"
    )
    assert elsewhere == []
    drawing = (errors.__doc__ or "").split("```")[1]
    drawn = set(re.findall(r"(?:─ |^)(\w+)", drawing, re.MULTILINE))
    assert {c.__name__ for c in _tree()} == drawn
    assert set(errors.__all__) == drawn


def test_the_refusals_of_our_http_client_are_httpx_transport_errors() -> None:
    assert issubclass(errors.EgressRefused, httpx.ConnectError) and issubclass(errors.EgressRefused, OSError)
    assert issubclass(errors.ResponseTooLarge, httpx.TransportError)
    refused = errors.EgressRefused("media host resolves to a loopback address")
    assert str(refused) == "media host resolves to a loopback address"
    assert str(errors.ResponseTooLarge(10, 20)) == "response body over the 10-byte limit (Content-Length 20)"


def _documented() -> dict[str, int]:
    """Class name -> exit code, as the --help epilog lists them."""
    codes: dict[str, int] = {}
    code = None
    for line in _EPILOG.splitlines()[1:]:
        head = re.match(r"\s+(\d)\s", line)
        if head:
            code = int(head.group(1))
        for name in re.findall(r"\b([A-Z]\w+(?:Error|File|Refused))\b", line):
            assert code is not None
            codes[name] = code
    return codes


def test_the_cli_maps_each_branch_to_its_documented_exit_code() -> None:
    documented = _documented()
    mapped = {cls.__name__: code for cls, code in EXIT_CODES.items() if cls is not ModerationError}
    assert documented == mapped
    for cls in _tree():
        ancestor = next(c for c in cls.__mro__ if c in EXIT_CODES)
        assert exit_code(cls.__new__(cls)) == EXIT_CODES[ancestor], cls
    assert exit_code(errors.ToolError("replay stopped")) == 1
    assert exit_code(errors.RegistryUnavailable("down")) == 3
    assert exit_code(errors.ConfigError("x", "y")) == 2


def test_help_shows_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert _EPILOG in capsys.readouterr().out


def test_commands_exit_with_their_branch_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: v1\nclassification: {nosuchcheck: {x: {block: 0.5}}}\n")
    assert main(["policy", "check", str(bad)]) == 1  # the check's "no"
    assert "nosuchcheck" in capsys.readouterr().err
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text("not json\n")
    good = str(DEFAULT_POLICY)
    assert main(["policy", "backtest", "--candidate", good, "--input", str(verdicts)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--" in err
