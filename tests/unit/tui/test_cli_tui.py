"""`tradesim tui` refuses to start with one readable line: exit 2 for a user mistake, 1 when the API is down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.testing.net import free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    monkeypatch.setenv("TRADESIM_API__URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there


def _credentials(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text(json.dumps(
        {"active": "alice", "users": {"alice": {"user_id": "alice", "api_key": "k"}}}))


def _one_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_no_account_exits_2() -> None:
    result = runner.invoke(app, ["tui"])
    assert result.exit_code == 2
    assert "no active account" in _one_line(result.output)


def test_an_unknown_user_exits_2(tmp_path: Path) -> None:
    _credentials(tmp_path)
    result = runner.invoke(app, ["tui", "--user", "bob"])
    assert result.exit_code == 2
    assert "no account 'bob'" in _one_line(result.output)
    assert "alice" in result.output


def test_an_unknown_binding_action_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _credentials(tmp_path)
    monkeypatch.setenv("TRADESIM_TUI__BINDINGS", json.dumps({"purchase": "p"}))
    result = runner.invoke(app, ["tui"])
    assert result.exit_code == 2
    assert "unknown action 'purchase'" in _one_line(result.output)


def test_an_unknown_theme_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _credentials(tmp_path)
    monkeypatch.setenv("TRADESIM_TUI__THEME", "sepia")
    result = runner.invoke(app, ["tui"])
    assert result.exit_code == 2
    assert "unknown theme 'sepia'" in _one_line(result.output)


def test_an_unreachable_api_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.tui import app as tui_app

    _credentials(tmp_path)
    monkeypatch.setattr(tui_app, "on_a_terminal", lambda: True)  # as a user's run has (CliRunner's has none)
    result = runner.invoke(app, ["tui"])
    assert result.exit_code == 1
    assert "the API is not reachable" in _one_line(result.output)


def test_an_active_account_missing_from_the_file_is_named(tmp_path: Path) -> None:
    """A review: an `active` naming no account was told "no active account: create one" (the CLI's wording, a
    second copy of the TUI's lookup); now one lookup for both, naming it and the accounts there are."""
    (tmp_path / "credentials.json").write_text(json.dumps(
        {"active": "zzz", "users": {"alice": {"user_id": "alice", "api_key": "k"}}}))
    for argv in (["tui"], ["orders"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        line = _one_line(result.output)
        assert "the active account 'zzz' is not in" in line
        assert "alice" in line
        assert "accounts use" in line


def test_an_empty_user_is_refused(tmp_path: Path) -> None:
    _credentials(tmp_path)
    result = runner.invoke(app, ["tui", "--user", ""])  # a probe: taken as "no user given"
    assert result.exit_code == 2
    assert "'' is not a user id" in _one_line(result.output)


def test_without_a_terminal_it_says_so(tmp_path: Path) -> None:
    """A probe: `tradesim tui </dev/null >file` wrote escape sequences into the file until killed."""
    _credentials(tmp_path)
    result = runner.invoke(app, ["tui"])  # CliRunner's input and output are no terminal
    assert result.exit_code == 2
    assert "tradesim tui needs a terminal" in _one_line(result.output)
