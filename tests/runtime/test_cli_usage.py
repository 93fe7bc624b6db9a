"""``warden`` with no arguments, ``--version`` and a bad subcommand: help for a person,
never a traceback."""

from __future__ import annotations

import importlib.metadata

from tests.runtime._helpers import cli_env, run_cli


def test_no_arguments_prints_the_help_and_succeeds() -> None:
    result = run_cli(env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: warden")
    for command in ("demo", "migrate", "verify"):
        assert command in result.stdout
    assert result.stderr == ""


def test_version_prints_the_installed_version() -> None:
    result = run_cli("--version", env=cli_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"warden {importlib.metadata.version('warden-runtime')}"


def test_an_unknown_subcommand_is_a_usage_error_naming_the_choices() -> None:
    result = run_cli("bogus", env=cli_env())
    assert result.returncode == 2
    assert "invalid choice: 'bogus'" in result.stderr
    assert "Traceback" not in result.stderr
