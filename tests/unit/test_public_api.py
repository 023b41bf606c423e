"""The public surface: ``stream.__all__`` and ``--help`` of every command."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from types import ModuleType

import pytest

import stream
from stream import config, errors
from stream.cli import build_parser, main

COMMANDS = ("run", "simulate", "replay", "demo", "optout")


def test_all_lists_the_public_names() -> None:
    assert sorted(stream.__all__) == [
        "CallstreamError",
        "ConfigError",
        "Policy",
        "QueuePolicy",
        "ServiceUnavailable",
        "Settings",
        "__version__",
    ]
    assert len(set(stream.__all__)) == len(stream.__all__)


def test_every_name_in_all_exists() -> None:
    for name in stream.__all__:
        assert getattr(stream, name) is not None, name


def test_all_is_exactly_what_the_package_exports() -> None:
    exported = {
        name
        for name, value in vars(stream).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert exported == set(stream.__all__) - {"__version__"}


def test_exports_are_the_defining_objects() -> None:
    assert stream.Settings is config.Settings
    assert stream.Policy is config.Policy
    assert stream.QueuePolicy is config.QueuePolicy
    assert stream.CallstreamError is errors.CallstreamError
    assert stream.ConfigError is errors.ConfigError
    assert stream.ServiceUnavailable is errors.ServiceUnavailable


def test_errors_share_one_base() -> None:
    assert issubclass(stream.ConfigError, stream.CallstreamError)
    assert issubclass(stream.ServiceUnavailable, stream.CallstreamError)
    assert issubclass(stream.CallstreamError, Exception)


def test_version_is_the_package_version() -> None:
    assert stream.__version__ == importlib.metadata.version("callstream")


def exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: callstream")
    for command in COMMANDS:
        assert command in out


def test_parser_knows_every_command() -> None:
    parser = build_parser()
    assert parser.prog == "callstream"
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code([command, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"usage: callstream {command}")
    assert captured.err == ""


def test_replay_help_names_its_file_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["replay", "--help"]) == 0
    assert "FILE" in capsys.readouterr().out.upper()


def test_optout_help_names_its_actions(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["optout", "--help"]) == 0
    out = capsys.readouterr().out
    for action in ("add", "remove", "list"):
        assert action in out


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"callstream {stream.__version__}"


@pytest.mark.parametrize("argv", [[], ["launch"], ["optout", "purge"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(argv) == 2
    assert "usage: callstream" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: callstream")


PARTS = ("parse", "figures", "state", "ingest", "act", "publish", "app", "tools")


@pytest.mark.parametrize("part", PARTS)
def test_each_part_says_what_it_owns_and_exports_its_entry_points(part: str) -> None:
    package = importlib.import_module(f"stream.{part}")
    assert package.__doc__ and len(package.__doc__.split()) > 10
    assert package.__all__ and len(set(package.__all__)) == len(package.__all__)
    for name in package.__all__:
        assert getattr(package, name, None) is not None or importlib.import_module(
            f"stream.{part}.{name}"), name
