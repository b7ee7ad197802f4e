"""CLI contract: user mistakes exit 2 with one readable line, no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tradesim.cli.app import SAME_REQUEST_S, app, main
from tradesim.settings import load_settings
from tradesim.testing.foreign import foreign_server

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))


def _one_line_error(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
          ) -> tuple[object, str, str]:
    """`tradesim ARGV` as the installed command runs it (CliRunner drives the app, not the entry point): its exit
    code, stdout and stderr."""
    import tradesim.cli.app as cli_app

    monkeypatch.setattr(sys, "argv", ["tradesim", *argv])
    # not in pytest itself: a second Ctrl-C would end the test run at once, its fixtures' stacks left up
    monkeypatch.setattr(cli_app, "install_signal_handlers", lambda: None)
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["logs", "redis", "-n", "0"], "'--lines'"), (["nosuch"], "No such command 'nosuch'"),
    (["logs"], "Missing argument"), (["replay", "calm", "--speed", "abc"], "'--speed'"),
    (["scenarios", "show", "calm", "--bogus"], "--bogus"),
    # numbers past any sensible bound, NaN and infinity (before: OverflowError, ValueError tracebacks)
    (["replay", "calm", "--speed", "nan"], "'--speed'"), (["replay", "calm", "--speed", "1e-300"], "'--speed'"),
    (["prices", "AAPL", "--timeout", "inf"], "'--timeout'"),
    (["scenarios", "show", "calm", "-n", "99999999999999999999"], "'--ticks'"),
    (["bench", "e2e", "--rates", "nan"], "--rates"), (["bench", "orders", "--rates", "5,inf"], "--rates"),
    # a rate that sends no order in a phase (before: `bench orders` ended in max()'s ValueError after its setup)
    (["bench", "orders", "--rates", "100,0.5", "--seconds", "1"], "--rates 0.5 sends no order"),
    (["bench", "e2e", "--rates", "0.04"], "--rates 0.04 sends no order"),
    # more symbols than ticks: none for any symbol (before: the ingest ran and printed 0 ticks at 0 ticks/s)
    (["bench", "marketdata", "--ticks", "1000", "--symbols", "1001"], "--symbols 1001 is more than --ticks 1000"),
    # more connections than the load generator's pool opens (before: 512 connections, reported as 1000)
    (["bench", "orders", "--concurrency", "1000"], "'--concurrency'"),
    # click reads a negative number as an option (before: "No such option: -1")
    (["order", "buy", "AAPL", "-1"], "negative number"), (["order", "sell", "AAPL", "-2.5"], "negative number"),
    (["order", "buy", "AAPL", "5", "--limt", "3"], "No such option: --limt"),
])
def test_a_mistake_typer_itself_catches_is_one_line_and_exit_2(
        argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(argv, monkeypatch, capsys)
    assert (code, out) == (2, "")
    line = _one_line_error(err)
    assert line.startswith("error: ")
    assert message in line


def test_the_entry_point_keeps_help_and_exit_codes(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["--help"], monkeypatch, capsys)[0] == 0
    code, out, err = _main([], monkeypatch, capsys)
    assert (code, "Usage" in out, err) == (2, True, "")  # no command: the help, as before, and nothing else
    code, out, err = _main(["order", "buy", "ACME", "0"], monkeypatch, capsys)  # a command's own mistake
    assert code == 2
    assert "QTY" in _one_line_error(err)


def test_invalid_port_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__PORT", "99999")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    line = _one_line_error(result.output)
    assert "kafka.port" in line
    assert "TRADESIM_KAFKA__PORT" in line


@pytest.mark.parametrize(("env", "value", "secret"), [
    ("TRADESIM_API__ADMIN_KEY", "ключ-hunter2", "hunter2"),  # not ASCII: refused, and never shown
    ("TRADESIM_API", '{"admin_key": "ключ-hunter2"}', "hunter2"),  # the section as JSON
    ("TRADESIM_REDIS__URL", "redis://u:hunter2@127.0.0.1:99999", "hunter2"),  # a URL's password
    ("TRADESIM_REDIS__URL", "redis://u:hunter2@[::1:6379", "hunter2"),  # one urlsplit cannot parse
    ("TRADESIM_REDIS__URL", "redis://u:hun/ter2@h:1", "hun"),  # a / splits it early: urllib quoted "hun" as a port
    ("TRADESIM_REDIS__URL", "redis://u:hun#ter2@h:1", "ter2"),
    ("TRADESIM_CLICKHOUSE__PASSWROD", "hunter2", "hunter2"),  # a misspelt secret: unknown, its value not shown
    ("TRADESIM_REDIS__URL", "redis://u:hunter2\u2100x@h:1", "hunter2"),  # urllib's own message quoted it whole
    ("TRADESIM_REDIS__URL", "u:hunter2@h:6379", "hunter2"),  # no scheme://
    # a host or broker given with user:password@: the validator's own message quoted it whole
    ("TRADESIM_KAFKA__BOOTSTRAP_SERVERS", "u:hunter2@b1.example:9092", "hunter2"),
    ("TRADESIM_KAFKA__BOOTSTRAP_SERVERS", "b0.example:9092,u:hunter2@b1.example", "hunter2"),
    ("TRADESIM_KAFKA__HOST", "u:hunter2@h", "hunter2"),
])
def test_an_invalid_secret_setting_is_named_but_never_shown(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                                           secret: str) -> None:
    """Before: the error line echoed the admin key and URL passwords as given."""
    monkeypatch.setenv(env, value)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    line = _one_line_error(result.output)
    assert env in line, line
    assert "***" in line or "PASSWROD" in env, line
    assert secret not in result.output


def test_unknown_component_in_only_exits_2() -> None:
    result = runner.invoke(app, ["up", "--only", "kafka,zookeeper"])
    assert result.exit_code == 2
    assert "unknown component 'zookeeper'" in _one_line_error(result.output)


def test_a_docker_purge_of_some_components_is_refused_before_any_docker_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda _: "/nonexistent/docker")  # any call would fail as "not found"
    result = runner.invoke(app, ["down", "--purge", "--only", "redis", "--runtime", "docker"])
    assert result.exit_code == 2, result.output  # before: `docker compose down -v`, every volume of the project
    assert "run it without --only" in _one_line_error(result.output)


@pytest.mark.parametrize(("argv", "says"), [
    (["up", "--runtime", "docker", "--with-jobs"], "--with-jobs submits to the native stack"),
    (["status"], "status reads the native stack"),
])
def test_what_the_docker_runtime_does_not_do_is_refused_before_any_docker_call(
        argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `up --runtime docker --with-jobs` left the jobs out without a word, and `status` under
    `stack.runtime=docker` reported the native stack's state, labelled native."""
    import shutil

    monkeypatch.setattr(shutil, "which", lambda _: "/nonexistent/docker")  # any call would fail as "not found"
    monkeypatch.setenv("TRADESIM_STACK__RUNTIME", "docker")
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert says in _one_line_error(result.output)


def test_unknown_runtime_exits_2() -> None:
    result = runner.invoke(app, ["up", "--runtime", "podman"])
    assert result.exit_code == 2
    assert "unknown runtime" in _one_line_error(result.output)


def test_special_files_where_files_are_read_are_refused_not_waited_on(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO where the log, the credentials or the settings file should be: before, `logs` and any command that
    reads credentials waited for ever, and TRADESIM_CONFIG was silently skipped."""
    log = tmp_path / "home" / "stack" / "redis" / "server.log"
    log.parent.mkdir(parents=True)
    os.mkfifo(log)
    result = runner.invoke(app, ["logs", "redis"])
    assert (result.exit_code, "is not a regular file" in _one_line_error(result.output)) == (2, True), result.output
    creds = tmp_path / "creds.fifo"
    os.mkfifo(creds)
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    result = runner.invoke(app, ["portfolio"])
    assert (result.exit_code, "is not a regular file" in _one_line_error(result.output)) == (2, True), result.output
    config = tmp_path / "config.fifo"
    os.mkfifo(config)
    monkeypatch.setenv("TRADESIM_CONFIG", str(config))
    result = runner.invoke(app, ["status"])
    assert (result.exit_code, "not a regular file" in _one_line_error(result.output)) == (2, True), result.output


def test_only_with_an_empty_value_is_an_empty_name_not_every_component() -> None:
    for argv in (["status", "--only", ""], ["down", "--only", ""], ["provision", "--only", ""]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output  # before: every component (provision downloaded them all)
        assert "an empty name" in _one_line_error(result.output)


@pytest.mark.parametrize("error", ["kafka", "delivery", "search"])
def test_a_server_a_command_reaches_directly_that_does_not_answer_is_one_line_and_exit_1(
        error: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmarks reach Kafka and the stores directly: before, their Unavailable errors left `cli_errors` as a
    traceback (`bench persistence` with Kafka down: KafkaUnavailable)."""
    import typer

    from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaUnavailable
    from tradesim.adapters.search.errors import SearchUnavailable
    from tradesim.cli.errors import cli_errors

    raised = {"kafka": KafkaUnavailable("cannot list topics at 127.0.0.1:1:\n timed out"),
              "delivery": KafkaDeliveryError("0 ticks failed and 1 were not acknowledged within 60 s"),
              "search": SearchUnavailable("OpenSearch did not answer")}[error]

    @cli_errors
    def command() -> None:
        raise raised

    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err.strip() == f"error: {' '.join(str(raised).split())}"


def test_logs_of_never_started_component_exits_1() -> None:
    result = runner.invoke(app, ["logs", "redis"])
    assert result.exit_code == 1  # the stack is not started: an environment state, not a mistake in the command
    assert "no log yet" in _one_line_error(result.output)


def test_a_log_the_system_will_not_read_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "home" / "stack" / "redis" / "server.log").mkdir(parents=True)  # a folder where the log should be
    for argv in (["logs", "redis"], ["logs", "redis", "-f"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, result.output  # before: exit 0 and nothing, or a traceback with -f
        assert "Is a directory" in _one_line_error(result.output)


def test_an_unknown_component_is_named_without_an_option_it_did_not_come_from() -> None:
    result = runner.invoke(app, ["logs", "zookeeper"])
    assert result.exit_code == 2
    line = _one_line_error(result.output)
    assert "unknown component 'zookeeper'" in line
    assert "--only" not in line


def test_a_home_that_is_a_file_is_a_setting_mistake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "file"))
    for argv in (["down"], ["market", "stop"], ["status"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output  # before: NotADirectoryError's traceback from `down`
        assert "is a file, not a folder" in _one_line_error(result.output)


def test_logs_follow_goes_into_the_new_log_after_a_restart_moved_the_old_and_on_after_a_trim(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    log = tmp_path / "home" / "stack" / "redis" / "server.log"
    log.parent.mkdir(parents=True)
    log.write_text("before\n")
    tradesim = Path(sys.executable).parent / "tradesim"  # the installed command, as a user runs it
    proc = subprocess.Popen([str(tradesim), "logs", "redis", "-f", "-n", "1"],
                            stdout=subprocess.PIPE, env={**os.environ, "TRADESIM_HOME": str(tmp_path / "home")})
    assert proc.stdout is not None
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""

        def wait_for_output(text: bytes) -> None:
            nonlocal seen
            deadline = time.monotonic() + 30
            while text not in seen:
                assert time.monotonic() < deadline, f"{text!r} not followed; printed: {seen!r}"
                seen += proc.stdout.read() or b""  # type: ignore[union-attr]
                time.sleep(0.05)

        wait_for_output(b"before")
        with open(log, "a") as fh:
            fh.write("old run\n")
        wait_for_output(b"old run")
        log.replace(log.with_name("server.log.1"))  # what a restart does to a log at the size limit
        log.write_text("new run\n")
        wait_for_output(b"new run")
        os.truncate(log, 0)  # the watchdog's trim of a running server's log, which goes on appending
        with open(log, "a") as fh:
            fh.write("TR\n")  # shorter than what was read: the follower sees the log was emptied
        wait_for_output(b"new run\nTR\n")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("written", [False, True])
def test_an_interrupted_backup_says_whether_it_left_a_folder_to_remove(
        written: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tradesim.stack.backup as backup_steps

    folder = tmp_path / "tuesday"

    def interrupted(*_args: object) -> None:
        if written:
            folder.mkdir()
            (folder / "kafka").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_steps, "backup", interrupted)
    said = runner.invoke(app, ["backup", str(folder)])
    assert said.exit_code == 130
    expected = "the folder has no manifest, so it is not a backup; remove it" if written else "nothing was written"
    assert f"backup into {folder} interrupted: {expected}" in said.stderr


def test_a_backup_a_server_stopped_before_it_wrote_says_nothing_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: a Kafka error before the backup wrote anything said "(the folder has no manifest, so it is not a
    backup; remove it)", and the empty folder stayed."""
    import tradesim.stack.backup as backup_steps
    from tradesim.adapters.kafka.errors import KafkaUnavailable

    def unavailable(_settings: object) -> dict[str, str]:
        raise KafkaUnavailable("broker down")

    monkeypatch.setattr(backup_steps, "_stores_up", lambda _settings: None)
    monkeypatch.setattr(backup_steps, "_doubled_jobs", lambda _settings: {})
    monkeypatch.setattr(backup_steps, "_running_jobs", unavailable)
    said = runner.invoke(app, ["backup", str(tmp_path / "tuesday")])
    assert said.exit_code == 1
    expected = f"error: backup into {tmp_path / 'tuesday'} (nothing was written) stopped: broker down"
    assert _one_line_error(said.stderr) == expected
    assert not (tmp_path / "tuesday").exists()
    (tmp_path / "mine").mkdir()  # a review: through `new/../`, it was taken for one the backup made, and removed
    said = runner.invoke(app, ["backup", str(tmp_path / "new" / ".." / "mine")])
    assert said.exit_code == 1
    assert (tmp_path / "mine").is_dir()
    assert not (tmp_path / "new").exists()
    too_long = runner.invoke(app, ["backup", str(tmp_path / ("b" * 300))])
    assert too_long.exit_code == 2  # before: 1, "(the folder has no manifest, so it is not a backup; remove it)"
    assert _one_line_error(too_long.stderr).endswith(": File name too long")


@pytest.mark.parametrize("begun", [False, True])
def test_an_interrupted_restore_says_whether_the_stack_changed(
        begun: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tradesim.stack.backup as backup_steps
    from tradesim.stack.marks import begin_restore

    settings = load_settings()

    def interrupted(*_args: object) -> None:
        if begun:
            begin_restore(settings, tmp_path / "monday")
        raise KeyboardInterrupt

    monkeypatch.setattr(backup_steps, "restore", interrupted)
    said = runner.invoke(app, ["restore", str(tmp_path / "monday")])
    assert said.exit_code == 130
    expected = "purge the stack and restore again" if begun else "the stack was not changed"
    assert f"restore from {tmp_path / 'monday'} interrupted: {expected}" in said.stderr


@pytest.mark.parametrize("begun", [False, True])
def test_a_restore_a_server_stopped_says_whether_the_stack_changed(
        begun: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: a server error before the restore began changing the stack (checking it is empty) said "purge the
    stack and restore again" though nothing was changed."""
    import tradesim.stack.backup as backup_steps
    from tradesim.stack.marks import begin_restore

    settings = load_settings()

    def fails(*_args: object) -> None:
        if begun:
            begin_restore(settings, tmp_path / "monday")
        raise TimeoutError("timed out")

    monkeypatch.setattr(backup_steps, "restore", fails)
    said = runner.invoke(app, ["restore", str(tmp_path / "monday")])
    assert said.exit_code == 1
    expected = "purge the stack and restore again" if begun else "the stack was not changed"
    assert _one_line_error(said.stderr) == f"error: restore from {tmp_path / 'monday'} ({expected}) stopped: timed out"


@pytest.mark.parametrize("stop", ["ctrl-c", "timed out"])
def test_a_restore_stopped_while_its_services_start_again_says_the_backup_is_restored(
        stop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the services a restore stopped start again after the "restore unfinished" mark is gone; a Ctrl-C or
    a failed start there said "the stack was not changed" of a stack holding the whole backup."""
    import tradesim.stack.backup as backup_steps

    def restored_then_stopped(_settings: object, _folder: object, _steps: object,
                              progress: backup_steps.RestoreProgress) -> None:
        progress.restored = True  # as the restore does once every store holds the backup
        raise KeyboardInterrupt if stop == "ctrl-c" else TimeoutError("timed out")

    monkeypatch.setattr(backup_steps, "restore", restored_then_stopped)
    said = runner.invoke(app, ["restore", str(tmp_path / "monday")])
    left = ("the backup is restored, but the services it stopped did not start again: `tradesim up` starts them")
    assert said.exit_code == (130 if stop == "ctrl-c" else 1)
    assert left in " ".join(said.stderr.split())
    assert "not changed" not in said.stderr


@pytest.mark.parametrize("stop", ["ctrl-c", "flink error"])
def test_a_restore_stopped_after_cancelling_the_empty_stack_s_jobs_says_so(
        stop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: the empty stack's jobs are cancelled before the restore marks the stack as changing; a Ctrl-C in
    between said "the stack was not changed" although its jobs no longer ran."""
    import tradesim.stack.backup as backup_steps
    from tradesim.adapters.flink.errors import FlinkUnavailable
    from tradesim.stack import jobs
    from tradesim.stack.marks import unfinished_restore

    folder = tmp_path / "monday"
    folder.mkdir()
    backup_steps.Manifest(backup_steps.FORMAT, "0.1.0", 1.0, 2.0, 3.0).save(folder)
    monkeypatch.setattr(backup_steps, "_stores_up", lambda _settings: None)
    monkeypatch.setattr(backup_steps, "_not_empty", lambda _settings, _manifest: [])
    from tradesim.adapters.flink.client import JobInfo

    class Cluster:
        def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
            return [JobInfo("j1", "tradesim-execution", "RUNNING", 2, 0),
                    JobInfo("j2", "tradesim-bars", "RUNNING", 1, 0)]

    monkeypatch.setattr(jobs, "cluster", lambda _settings: Cluster())

    def cancel(_settings: object, job_id: str) -> None:
        if job_id == "j2":
            raise KeyboardInterrupt if stop == "ctrl-c" else FlinkUnavailable("connection refused")

    monkeypatch.setattr(jobs, "cancel_job", cancel)
    said = runner.invoke(app, ["restore", str(folder)])
    assert unfinished_restore(load_settings()) is None  # the data was not touched
    # bars' cancel was asked for and failed (or was cut short): it may have happened, so it is named as asked
    left = ("the stack's data was not changed, but its jobs were cancelled or asked to be (execution, bars): restore "
            "again, or start them with `tradesim jobs submit NAME`")
    if stop == "ctrl-c":
        assert said.exit_code == 130
        assert f"restore from {folder} interrupted: {left}" in " ".join(said.stderr.split())
    else:
        assert said.exit_code == 1
        assert " ".join(said.stderr.split()) == f"error: restore from {folder} ({left}) stopped: connection refused"


def test_status_names_an_unfinished_restore_until_down_purge_clears_it(tmp_path: Path) -> None:
    from tradesim.stack.marks import begin_rebuild, begin_restore
    from tradesim.stack.state import StateFile

    settings = load_settings()
    StateFile(settings.stack_dir).claim()  # a folder `up` made
    begin_restore(settings, tmp_path / "monday")
    begin_rebuild(settings, "analytics")
    shown = runner.invoke(app, ["status", "--only", "redis"])
    assert f"warning: a restore from {tmp_path / 'monday'} did not finish" in shown.stderr
    assert "warning: a rebuild of analytics stopped at or after its switch to a fresh copy" in shown.stderr
    assert "did not finish" in json.loads(runner.invoke(app, ["status", "--json", "--only", "redis"]).stdout)[
        "unfinished_restore"]
    backup = runner.invoke(app, ["backup", str(tmp_path / "tuesday")])  # no stack runs: it stops after warning
    assert f"warning: a restore from {tmp_path / 'monday'} did not finish" in backup.stderr
    assert runner.invoke(app, ["down", "--only", "redis", "--purge"]).exit_code == 0
    assert "did not finish" in runner.invoke(app, ["status", "--only", "redis"]).stderr  # one part purged only
    assert runner.invoke(app, ["down", "--purge"]).exit_code == 0
    assert runner.invoke(app, ["status", "--only", "redis"]).stderr == ""  # an empty stack misses nothing


def test_down_only_toxiproxy_with_chaos_on_says_what_it_cuts_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `down --only toxiproxy` said only what it stopped, while every service and job, routed through
    its ports, silently lost Redis, DynamoDB and Kafka."""
    monkeypatch.setenv("TRADESIM_CHAOS__ENABLED", "true")
    cut = runner.invoke(app, ["down", "--only", "toxiproxy"])
    assert cut.exit_code == 0
    assert "they fail until `tradesim up` starts it again" in cut.stderr
    monkeypatch.setenv("TRADESIM_CHAOS__ENABLED", "false")
    assert runner.invoke(app, ["down", "--only", "toxiproxy"]).stderr == ""
    monkeypatch.setenv("TRADESIM_CHAOS__ENABLED", "true")
    assert runner.invoke(app, ["down", "--only", "redis"]).stderr == ""
    assert "they fail until" in runner.invoke(app, ["down", "--only", "redis, toxiproxy"]).stderr


def test_status_json_of_empty_stack_has_stable_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("TRADESIM_STACK__WATCHDOG", "true")  # as users have it (the integration tests turn it off)
    result = runner.invoke(app, ["status", "--json", "--only", "redis"])
    assert result.exit_code == 1  # nothing runs: not healthy
    doc = json.loads(result.stdout)
    assert set(doc) == {"schema_version", "runtime", "stack_dir", "healthy", "components", "unfinished_restore",
                        "unfinished_rebuilds", "watchdog"}
    assert (doc["unfinished_restore"], doc["unfinished_rebuilds"], doc["watchdog"]) == (None, [], "idle")
    assert doc["schema_version"] == 1
    (row,) = doc["components"]
    assert set(row) == {"name", "state", "healthy", "pid", "address", "version", "started_at", "uptime_s",
                        "detail", "log", "last_log_lines", "restarts"}
    assert (row["name"], row["state"], row["healthy"]) == ("redis", "stopped", False)


def test_status_and_its_errors_do_not_print_a_urls_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import tradesim.client.api as apiclient

    """Before: `status` (and --json, which CI logs keep) printed an external Redis's password in full."""
    import json

    monkeypatch.setenv("TRADESIM_REDIS__URL", "redis://admin:s3cret-pw@127.0.0.1:9/0")  # nothing answers at :9
    monkeypatch.setenv("TRADESIM_API__URL", "http://user:api-pw@127.0.0.1:9")
    result = runner.invoke(app, ["status", "--json", "--only", "redis"])
    (row,) = json.loads(result.stdout)["components"]
    assert (row["state"], row["address"]) == ("external", "redis://admin:***@127.0.0.1:9/0")
    assert "s3cret-pw" not in result.output
    monkeypatch.setattr(apiclient, "active_key", lambda settings: ("alice", "ts_key"))
    result = runner.invoke(app, ["portfolio"])
    assert result.exit_code == 1, result.output
    assert "http://user:***@127.0.0.1:9" in result.output
    assert "api-pw" not in result.output


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://admin:pw@host:6379/0", "redis://admin:***@host:6379/0"),
    ("rediss://:pw@host/0", "rediss://:***@host/0"),
    ("https://u:p%40ss@search.example:9200", "https://u:***@search.example:9200"),
    ("http://user@host:8080", "http://user@host:8080"),  # no password: as given
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("not a url", "not a url"),
    ("redis://u:pw@[::1:6379/0", "redis://u:***@[::1:6379/0"),  # not parsed: what looks like a password hidden
    ("redis://u:p/w?x#y@host:1/0", "redis://u:***@host:1/0"),  # unencoded / ? #: hidden to the last @
    ("http://host:8123/?q=a@b", "http://host:8123/?q=a@b"),  # an @ after the host is the query's
    ("http://u:p@host/?email=a@b.c", "http://u:***@host/?email=a@b.c"),
])
def test_redacted_hides_only_the_password(url: str, shown: str) -> None:
    from tradesim.settings import redacted

    assert redacted(url) == shown


def test_a_health_check_names_its_url_without_the_password() -> None:
    from tradesim.stack.component import Unhealthy, answers

    with pytest.raises(Unhealthy) as caught:
        answers("http://prom:hunter2@127.0.0.1:9/-/ready", "Prometheus")  # nothing answers at :9
    assert "http://prom:***@127.0.0.1:9/-/ready" in str(caught.value)
    assert "hunter2" not in str(caught.value)


# ---- read commands: portfolio, trades, analytics ----------------------------------------------------------------

@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, dict[str, object]]]:
    """Answers the read commands' API calls from `answers` (path → answer, or a list of pages); records the calls."""
    import tradesim.client.api as apiclient

    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    calls: list[tuple[str, dict[str, object]]] = []

    def exchange(settings: object, method: str, path: str, key: str, *, params: dict[str, object] | None = None,
                 **_: object) -> tuple[object, httpx.Headers]:
        calls.append((path, {k: v for k, v in (params or {}).items() if v is not None}))
        answer = ANSWERS[path]
        return answer.pop(0) if isinstance(answer, list) else answer, httpx.Headers()

    monkeypatch.setattr(apiclient, "exchange", exchange)
    monkeypatch.setattr(apiclient, "call", lambda *args, **kwargs: exchange(*args, **kwargs)[0])
    monkeypatch.setattr(apiclient, "active_key", lambda settings: ("alice", "ts_key"))
    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")
    return calls


POSITION = {"symbol": "ACME", "qty": 18, "average_cost": "96.97222222", "realized_pnl": "23.33333333",
            "last_price": "100.01", "price_age_ms": 1500, "price_stale": False, "market_value": "1800.18",
            "unrealized_pnl": "54.68000000", "day_reference_price": "98.00", "day_change": "36.18"}
PORTFOLIO = {"user_id": "alice", "as_of_ms": 1_790_000_000_000, "cash": "48272.50", "positions": [POSITION],
             "market_value": "1800.18", "equity": "50072.68", "realized_pnl": "23.33333333",
             "unrealized_pnl": "54.68000000", "day_change": "36.18", "degraded": []}
ANSWERS: dict[str, object] = {}


def _trade(i: int) -> dict[str, object]:
    return {"order_id": f"o_{i}", "user_id": "alice", "symbol": "ACME", "side": "buy", "qty": i, "status": "executed",
            "order_type": "market", "placed_at_ms": 1_790_000_000_000, "decided_at_ms": 1_790_000_000_100,
            "reason": None, "price": "10.00", "fee": "1.00", "notional": f"{10 * i}.00"}


def test_portfolio_prints_a_table_and_its_json(api: list[tuple[str, dict[str, object]]]) -> None:
    import json

    ANSWERS["/portfolio"] = PORTFOLIO
    shown = runner.invoke(app, ["portfolio"])
    assert shown.exit_code == 0, shown.output
    for text in ("ACME", "96.9722", "100.01", "1,800.18", "+54.68", "+23.33", "+36.18", "50,072.68"):
        assert text in shown.stdout
    assert "[" not in shown.stdout  # a review: P&L figures came out as "[green]+54.68[/green]" (output is text)
    as_json = runner.invoke(app, ["portfolio", "--json"])
    assert json.loads(as_json.stdout) == PORTFOLIO


@pytest.mark.parametrize(("options", "shown"), [
    ([], "buy 1 ACME market (day)"),
    (["--limit", "5"], "buy 1 ACME limit 5 (day)"),  # was "limit limit 5"
    (["--stop", "6", "--tif", "gtc"], "buy 1 ACME stop 6 (gtc)"),
    (["--stop", "6", "--limit", "7"], "buy 1 ACME stop 6 limit 7 (day)"),
])
def test_a_placed_order_is_confirmed_with_its_type_once(api: list[tuple[str, dict[str, object]]],
                                                        options: list[str], shown: str) -> None:
    ANSWERS["/orders"] = {"order_id": "o_1", "status": "accepted"}
    placed = runner.invoke(app, ["order", "buy", "ACME", "1", *options])
    assert placed.exit_code == 0, placed.output
    assert f"accepted: {shown} — order o_1" in placed.stdout


def test_a_degraded_portfolio_still_prints_and_warns(api: list[tuple[str, dict[str, object]]]) -> None:
    unknown = dict.fromkeys(("average_cost", "realized_pnl", "unrealized_pnl", "day_reference_price", "day_change"))
    ANSWERS["/portfolio"] = {**PORTFOLIO, "positions": [{**POSITION, **unknown}], "realized_pnl": None,
                             "unrealized_pnl": None, "day_change": None, "degraded": ["analytics"]}
    shown = runner.invoke(app, ["portfolio"])
    assert shown.exit_code == 0, shown.output
    assert "1,800.18" in shown.stdout
    assert "analytics did not answer" in shown.stderr


def test_trades_pages_until_the_limit(api: list[tuple[str, dict[str, object]]]) -> None:
    import json

    ANSWERS["/trades/search"] = [{"trades": [_trade(i) for i in range(500)], "next_cursor": "c1", "total": 900},
                                 {"trades": [_trade(i) for i in range(200)], "next_cursor": "c2", "total": 900}]
    shown = runner.invoke(app, ["trades", "--symbol", "acme", "--side", "buy", "--status", "executed",
                                "--since", "1h", "--q", "limit", "--limit", "700", "--json"])
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.stdout)
    assert (len(answer["trades"]), answer["next_cursor"], answer["total"]) == (700, "c2", 900)
    (first_path, first), (_, second) = api
    assert first_path == "/trades/search"
    assert {k: first[k] for k in ("symbol", "side", "status", "q", "size")} == {
        "symbol": "ACME", "side": "buy", "status": "executed", "q": "limit", "size": 500}
    assert int(str(first["from"])) > 0
    assert "cursor" not in first
    assert (second["cursor"], second["size"]) == ("c1", 200)


def test_trades_table(api: list[tuple[str, dict[str, object]]]) -> None:
    ANSWERS["/trades/search"] = {"trades": [_trade(3)], "next_cursor": None, "total": 1}
    shown = runner.invoke(app, ["trades"])
    assert shown.exit_code == 0, shown.output
    assert "o_3" in shown.stdout
    assert "30.00" in shown.stdout


@pytest.mark.parametrize("argv", [["orders"], ["trades"]])
def test_orders_and_trades_show_a_times_year(api: list[tuple[str, dict[str, object]]], argv: list[str]) -> None:
    """Before: `trades` printed `09-21 14:13:20`, so a trade of an earlier year read as this year's (`orders`
    showed the year). Both print the same UTC date and time; in a pipe the date is never folded (`2026-09-`)."""
    long_id = "o_7efc976e436d4f6290b2dc39d0d20c14"  # leaves the other columns little room in 80
    ANSWERS["/orders"] = {"orders": [{
        "order_id": long_id, "user_id": "alice", "symbol": "ACME", "side": "buy", "qty": 1, "type": "market",
        "time_in_force": "day", "status": "executed", "fill_price": "10.00", "placed_at_ms": 1_790_000_000_000}]}
    ANSWERS["/trades/search"] = {"trades": [{**_trade(3), "order_id": long_id}], "next_cursor": None, "total": 1}
    for columns in ("200", "80"):
        shown = runner.invoke(app, argv, env={"COLUMNS": columns})
        assert shown.exit_code == 0, shown.output
        assert ("2026-09-21 14:13:20" if columns == "200" else "2026-09-21") in shown.stdout, shown.stdout


def test_order_ids_and_figures_are_never_cut_in_a_pipe(api: list[tuple[str, dict[str, object]]]) -> None:
    """A probe: piped (80 columns), `orders` printed `o_7efc976e…`, an id no command takes, and `trades` printed
    `1,012.…` and `insuffi…`."""
    long_id = "o_7efc976e436d4f6290b2dc39d0d20c14"
    ANSWERS["/orders"] = {"orders": [{
        "order_id": long_id, "user_id": "alice", "symbol": "ACME", "side": "buy", "qty": 10, "type": "limit",
        "limit_price": "100.0125", "time_in_force": "day", "status": "accepted", "in_book": True,
        "placed_at_ms": 1_738_315_800_000}]}
    ANSWERS["/trades/search"] = {"trades": [
        {**_trade(3), "order_id": long_id, "qty": 101, "notional": "1012.50", "price": "10.0248"},
        {**_trade(4), "status": "rejected", "reason": "insufficient_funds", "price": None, "fee": None,
         "notional": None}], "next_cursor": None, "total": 2}
    for argv in (["orders"], ["trades"]):
        shown = runner.invoke(app, argv, env={"COLUMNS": "80"})
        assert shown.exit_code == 0, shown.output
        assert long_id in shown.stdout, shown.stdout
        assert "…" not in shown.stdout, shown.stdout


def test_analytics_volume_and_pnl(api: list[tuple[str, dict[str, object]]]) -> None:
    ANSWERS["/analytics/volume"] = {"user_id": None, "interval": "1h", "from_ms": 0, "to_ms": 3_600_000,
                                    "buckets": [{"symbol": "ACME", "start_ms": 0, "shares": 1200,
                                                 "notional": "120600.00", "trades": 3, "vwap": "100.5"}]}
    ANSWERS["/analytics/pnl"] = {"user_id": "alice", "interval": "1d", "from_ms": 0, "to_ms": 86_400_000,
                                 "cash": "900.00", "points": [{"end_ms": 86_400_000, "realized_pnl": "-12.5",
                                                               "equity": None}]}
    volume = runner.invoke(app, ["analytics", "volume", "--market", "--symbol", "acme", "--since", "2d"])
    assert volume.exit_code == 0, volume.output
    assert "market volume" in volume.stdout
    assert "120,600.00" in volume.stdout
    assert "100.50" in volume.stdout
    pnl = runner.invoke(app, ["analytics", "pnl", "--interval", "1d"])
    assert pnl.exit_code == 0, pnl.output
    assert "-12.50" in pnl.stdout
    assert "[" not in pnl.stdout
    assert [(path, params.get("interval"), params.get("symbol")) for path, params in api] == [
        ("/analytics/volume", "1h", "ACME"), ("/analytics/pnl", "1d", None)]


@pytest.mark.parametrize(("argv", "message"), [
    (["trades", "--side", "short"], "--side must be buy or sell"),
    (["trades", "--status", "accepted"], "--status must be one of"),
    (["trades", "--since", "yesterday"], "--since must be a duration"),
    (["trades", "--symbol", "no way"], "invalid symbol"),
    (["trades", "--symbol", "acme\n"], "invalid symbol"),  # `$` in a Python regex lets a final newline through
    (["analytics", "volume", "--interval", "2m"], "--interval must be one of"),
    (["analytics", "pnl", "--since", "3 days"], "--since must be a duration"),
])
def test_bad_read_options_exit_2_with_one_line(api: list[tuple[str, dict[str, object]]], argv: list[str],
                                               message: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert message in _one_line_error(result.output)
    assert api == []  # refused before any request


def test_read_commands_without_an_account_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "none.json"))
    for argv in (["portfolio"], ["trades"], ["analytics", "pnl"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2
        assert "no active account" in _one_line_error(result.output)


def test_since_accepts_durations_and_iso_times() -> None:
    from tradesim.cli.readout import since_param
    from tradesim.stack.errors import UserError

    now = 1_738_315_800_000
    assert since_param("1h", now_ms=now) == str(now - 3_600_000)
    assert since_param("90s", now_ms=now) == str(now - 90_000)
    assert since_param("3000w", now_ms=now) == "0"  # before the epoch
    # before the API takes digits (it refuses them as likely seconds): the beginning, which finds the same
    assert since_param("1970-01-02") == "0"
    assert since_param("20110d", now_ms=now) == "0"
    assert since_param("2025-01-31T09:30:00Z") == "1738315800000"  # sent as epoch ms: no `+` to escape
    assert since_param("2025-01-31T10:30:00+01:00") == since_param("2025-01-31 09:30") == "1738315800000"
    assert since_param(None) is None
    # before: sent on as written, and the API's 422 named its own parameter (`query.from: not an ISO-8601 time`)
    for typo in ("2025-01-31garbage", "2025-02-30"):
        with pytest.raises(UserError, match=r"^--since: not an ISO-8601 time: "):
            since_param(typo)


@pytest.mark.parametrize("value", ["2025-01-31T09.5", "2025-01-31T09,5Z", "2025-01-31T09:30.5", "2025-01-31T0930.5"])
def test_since_takes_a_fraction_only_after_the_seconds_as_the_api_does(value: str) -> None:
    """A probe: `--since 2025-01-31T09.5` (ISO-8601: 09:30) was read by Python as 09:00:00.500 and sent as epoch
    ms, so the CLI listed half an hour more than asked where the API refuses the same text (422)."""
    from tradesim.cli.readout import since_param
    from tradesim.stack.errors import UserError

    with pytest.raises(UserError, match=r"^--since: not an ISO-8601 time: "):
        since_param(value)
    assert since_param("2025-01-31T09:30:00.5Z") == "1738315800500"


def test_a_422_about_a_query_parameter_names_the_option_that_gave_it() -> None:
    from tradesim.cli.readout import OPTIONS
    from tradesim.client.api import _in_options_terms

    problem = {"code": "invalid_request", "message": "query.interval: 10081 buckets",
               "errors": [{"loc": ["query", "interval"], "msg": "10081 buckets of 1m", "type": "value_error"}]}
    assert _in_options_terms(problem, OPTIONS) == "--interval: 10081 buckets of 1m"
    assert _in_options_terms({**problem, "errors": [{"loc": ["body", "qty"], "msg": "x"}]}, OPTIONS) is None
    assert _in_options_terms({"errors": "not a list"}, OPTIONS) is None


@pytest.mark.parametrize(("env", "toml", "message"), [
    ({"TRADESIM_TUI__WATCHLIST": "AAPL"}, None, "are JSON"),
    ({"TRADESIM_KAFKA": "notjson"}, None, "TRADESIM_KAFKA: not JSON"),
    # a probe: it named the section (`field "faults"`), not the variable
    ({"TRADESIM_FAULTS__POISON": "notjson"}, None, "TRADESIM_FAULTS__POISON: not JSON"),
    ({}, "[api\n", "tradesim.toml: not valid TOML"),
    ({}, b"\xff\xfe", "tradesim.toml: not UTF-8 text"),
    ({}, '[api]\nport = "abc"\n', "api.port ('abc' in tradesim.toml)"),
    ({"TRADESIM_CONFIG": "/nonexistent/tradesim.toml"}, None, "TRADESIM_CONFIG='/nonexistent/tradesim.toml': no such"),
    ({"TRADESIM_API": '{"port": "abc"}'}, None, "api.port ('abc' in TRADESIM_API)"),
    ({"tradesim_api__port": "abc"}, None, "api.port (TRADESIM_API__PORT='abc')"),
    ({"TRADESIM_HOME": ""}, None, "home (TRADESIM_HOME='')"),
    ({"TRADESIM_HOME": "~nosuchuser-of-tradesim/x"}, None, "home (TRADESIM_HOME="),
    ({"TRADESIM_KAFKA__BOOTSTRAP_SERVERS": ""}, None, "kafka.bootstrap_servers"),
    # before: accepted, and every client then failed on its own terms (the Flink connector with a stack trace)
    ({"TRADESIM_KAFKA__BOOTSTRAP_SERVERS": "h:notaport"}, None, "'h:notaport' has no port of 1 to 65535"),
    ({"TRADESIM_KAFKA__BOOTSTRAP_SERVERS": "a:9092,b"}, None, "'b' has no port"),
    ({"TRADESIM_KAFKA__BOOTSTRAP_SERVERS": "a:9092,b..c:9092"}, None, "'b..c'"),
    ({"TRADESIM_REDIS__URL": "bogus"}, None, "redis.url"),
    ({"TRADESIM_API__URL": "http://127.0.0.1:abc"}, None, "api.url"),
    ({"TRADESIM_API__URL": "http://[::1"}, None, "api.url"),
    ({"TRADESIM_FLINK__REST_URL": "bogus"}, None, "flink.rest_url"),
    # the socket layer's IDNA codec refuses these with a UnicodeError (a traceback from whatever connected first)
    ({"TRADESIM_FLINK__HOST": "a..b"}, None, "flink.host"),
    ({"TRADESIM_STACK__JAVA_HOME": ""}, None, "stack.java_home"),  # before: the current folder's bin/java
    ({"TRADESIM_API__HOST": "x" * 64 + ".example"}, None, "api.host"),
    ({"TRADESIM_API__URL": "http://a..b:8080"}, None, "api.url"),
    ({"TRADESIM_MARKETDATA__WS_URL": "ws://x:abc"}, None, "marketdata.ws_url"),
    ({"TRADESIM_OBSERVABILITY__PROMETHEUS_URL": "http://x:abc"}, None, "observability.prometheus_url"),
    ({"TRADESIM_API_PORT": "8090"}, None, "TRADESIM_API_PORT: not a tradesim setting"),  # before: ignored
])
def test_settings_that_cannot_be_read_or_used_exit_2_with_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], toml: str | bytes | None,
        message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if isinstance(toml, bytes):
        (tmp_path / "tradesim.toml").write_bytes(toml)
    elif toml is not None:
        (tmp_path / "tradesim.toml").write_text(toml)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2, result.output
    assert message in _one_line_error(result.output)


def test_a_folder_named_like_the_settings_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "tradesim.toml").mkdir()
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "tradesim.toml: a folder, not a file" in _one_line_error(result.output)


@pytest.mark.parametrize(("argv", "message"), [
    (["order", "buy", "ACME", "²"], "QTY must be a positive whole number"),
    (["order", "buy", "ACME", "1", "--idempotency-key", "é"], "--idempotency-key must be 1 to 255 printable"),
    (["order", "buy", "ACME", "1", "--idempotency-key", "ab "], "without spaces at either end"),  # a probe: "API
    (["order", "buy", "ACME", "1", "--idempotency-key", " ab"], "without spaces at either end"),  # not reachable"
    (["order", "buy", "ACME", "9" * 5000], "QTY must be a positive whole number"),  # before: int()'s traceback
    # a probe: up to 12 digits were sent, and the API's 422 named its own limit
    (["order", "buy", "ACME", "1000000001"], "QTY must be a positive whole number of shares, at most 1000000000"),
    (["order", "sell", "ACME", "999999999999"], "at most 1000000000, got '999999999999'"),
    (["order", "buy", "ACME", "000"], "QTY must be a positive whole number"),
    (["order", "buy", "mſft", "1"], "invalid symbol 'mſft'"),  # before: Unicode's upper() made it MSFT, traded
    (["order", "buy", "ß", "1"], "invalid symbol 'ß'"),
    (["order", "buy", "ACME", "1", "--limit", "100.12345"], "--limit has at most 4 decimal places"),
    (["order", "buy", "ACME", "1", "--stop", "1e30"], "--stop must be at most 1000000"),
    (["order", "buy", "ACME", "1", "--limit", "0.00000"], "--limit must be a positive price"),
    # a probe: Python's Decimal read these (an underscore, Arabic-Indic digits): a typo became a price
    (["order", "buy", "ACME", "1", "--limit", "1_000"], "--limit must be a number like 101.25, got '1_000'"),
    (["order", "buy", "ACME", "1", "--stop", "٣"], "--stop must be a number like 101.25"),
    (["accounts", "reset", ""], "'' is not a user id"),  # before: reset the active account
    (["accounts", "reset", "c1/rotate-key?"], "is not a user id"),  # before: rotated c1's key, never shown
    (["accounts", "rotate-key", "bob/reset#"], "is not a user id"),  # before: reset bob's account
    (["logs", ""], "an empty name"),
    # a review: each of these listed or started everything, as if the option had not been given
    (["orders", "--symbol", ""], "invalid symbol ''"),
    (["trades", "--q", "  "], "--q needs a word to find"),
    (["market", "start", ""], "scenario: empty"),
    (["run", "calm", "--junit", "/nonexistent/x.xml"], "the folder /nonexistent does not exist"),
    (["run", "calm", "--json", "."], "is a folder"),
    (["run", "calm", "--json", "r.x", "--junit", "./r.x"], "--junit and --json both name"),  # before: XML over JSON
    (["smoke", "--junit", "/nonexistent/x.xml"], "the folder /nonexistent does not exist"),
])
def test_bad_arguments_exit_2_before_any_work(api: list[tuple[str, dict[str, object]]], argv: list[str],
                                              message: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in _one_line_error(result.output)
    assert api == []


@pytest.mark.parametrize("option", ["--json", "--junit"])
def test_a_report_may_not_overwrite_its_own_scenario_file(tmp_path: Path, option: str) -> None:
    """A probe: `run f.yaml --json f.yaml` wrote the unfinished report over the scenario, then read that as one."""
    path = tmp_path / "mine.yaml"
    text = (Path(__file__).parents[2] / "scenarios" / "round-trip-fees.yaml").read_text()
    path.write_text(text)
    other, other_file = ("--junit", tmp_path / "r.xml") if option == "--json" else ("--json", tmp_path / "r.json")
    other_file.write_text('{"passed": true}')  # an earlier run's report
    result = runner.invoke(app, ["run", str(path), option, str(tmp_path / "." / "mine.yaml"), other, str(other_file)])
    assert result.exit_code == 2, result.output
    assert f"{option} names the scenario file" in _one_line_error(result.output)
    assert path.read_text() == text
    assert "names the scenario file" in other_file.read_text()  # the other report says why, not an old pass


def test_a_run_of_a_file_without_expectations_is_refused(tmp_path: Path) -> None:
    """A probe: a file without `expect` ran and passed with no check (an empty `expect:` was refused already)."""
    result = runner.invoke(app, ["run", "calm", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 2, result.output
    assert "calm.yaml: expect: the file has no `expect` section" in _one_line_error(result.output)
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def test_a_run_that_ends_early_is_reported_under_its_scenarios_id_as_a_finished_one_is(tmp_path: Path) -> None:
    """A probe: a finished run's reports name the scenario's `id`, one that ended early the file's name, so a CI
    server showed two suites for one scenario whose file is named otherwise."""
    path = tmp_path / "my-file.yaml"
    path.write_text((Path(__file__).parents[2] / "scenarios" / "calm.yaml").read_text())  # id: calm, no expect
    result = runner.invoke(app, ["run", str(path), "--json", str(tmp_path / "r.json"), "--junit",
                                 str(tmp_path / "r.xml")])
    assert result.exit_code == 2, result.output
    assert json.loads((tmp_path / "r.json").read_text())["scenario"] == "calm"
    assert 'testsuite name="calm"' in (tmp_path / "r.xml").read_text()


def test_a_bad_scenario_file_leaves_an_error_report_in_place_of_an_older_runs(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text('{"passed": true}')  # an earlier run's report
    (tmp_path / "bad.yaml").write_text("id: bad\n")
    result = runner.invoke(app, ["run", str(tmp_path / "bad.yaml"), "--json", str(tmp_path / "old.json"),
                                 "--junit", str(tmp_path / "old.xml")])
    assert result.exit_code == 2, result.output
    doc = json.loads((tmp_path / "old.json").read_text())
    assert (doc["passed"], doc["scenario"], doc["seed"]) == (False, "bad", None)
    assert "bad.yaml" in doc["error"]


@pytest.mark.parametrize("command", ["run", "smoke"])
def test_an_interrupted_run_leaves_reports_saying_so_not_an_older_runs_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """Before: Ctrl-C or SIGTERM (a CI job's timeout or cancel) left the previous run's files, `passed: true`."""
    from tradesim.cli import run as run_cli
    from tradesim.scenarios.report import UNFINISHED
    from tradesim.stack.supervisor import Supervisor

    def interrupted(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cli, "run_file", interrupted)
    monkeypatch.setattr(Supervisor, "status", lambda self: [])  # smoke: a stack it need not start
    (tmp_path / "old.json").write_text('{"passed": true}')
    (tmp_path / "old.xml").write_text('<testsuites tests="1" failures="0" errors="0"/>')
    reports = ["--junit", str(tmp_path / "old.xml")] + (["--json", str(tmp_path / "old.json")]
                                                        if command == "run" else [])
    result = runner.invoke(app, [command, *(["round-trip-fees"] if command == "run" else []), *reports])
    assert result.exit_code == 130, result.output
    assert UNFINISHED in (tmp_path / "old.xml").read_text()
    if command == "run":
        doc = json.loads((tmp_path / "old.json").read_text())
        assert (doc["passed"], doc["error"], doc["outcomes_hash"]) == (False, UNFINISHED, None)


def test_smoke_that_cannot_start_leaves_a_report_saying_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: a smoke stopped by a bad setting or folder (exit 2) left an older run's passing JUnit file."""
    (tmp_path / "old.xml").write_text('<testsuites tests="1" failures="0" errors="0"/>')
    monkeypatch.setenv("TRADESIM_SCENARIOS_DIR", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["smoke", "--junit", str(tmp_path / "old.xml")])
    assert result.exit_code == 2, result.output
    report = (tmp_path / "old.xml").read_text()
    assert "nowhere" in report
    assert 'errors="1"' in report


@pytest.mark.parametrize(("content", "message"), [
    ("[]", "a JSON list, not an object"),
    ('{"users": {"bob": "k"}}', "user 'bob' has no `user_id` and `api_key` strings"),
    ('{"users": []}', "`users` is not an object"),
    ("{not json", "cannot read the credentials file"),
])
def test_a_broken_credentials_file_is_named_and_costs_no_key(
        api: list[tuple[str, dict[str, object]]], tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "credentials.json").write_text(content)
    for argv in (["accounts", "create", "bob", "--cash", "100"], ["accounts", "rotate-key", "bob"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        assert message in _one_line_error(result.output)
    assert api == []  # read before the API was asked for a key it shows once
    assert (tmp_path / "credentials.json").read_text() == content


@pytest.mark.parametrize("user_id", ["bob/rotate-key?", "..", "", "Bob"])
def test_a_stored_user_id_that_is_not_one_is_refused_before_it_reaches_a_url(
        user_id: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A probe: a hand-edited user id `bob/rotate-key?` made `accounts reset` (no NAME: the active account) POST
    /accounts/bob/rotate-key?/reset."""
    import tradesim.client.api as apiclient

    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    monkeypatch.setattr(apiclient, "call", lambda *_a, **_k: pytest.fail("sent"))
    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")
    (tmp_path / "credentials.json").write_text(
        json.dumps({"active": "bob", "users": {"bob": {"user_id": user_id, "api_key": "ts_k"}}}))
    result = runner.invoke(app, ["accounts", "reset"])
    assert result.exit_code == 2, result.output
    line = _one_line_error(result.output)
    assert f"the credentials file {tmp_path / 'credentials.json'} is not one tradesim wrote" in line
    assert "user 'bob''s `user_id` must be a user id" in line


def test_an_answer_that_would_make_the_credentials_file_unreadable_is_not_saved(monkeypatch: pytest.MonkeyPatch,
                                                                                tmp_path: Path) -> None:
    import tradesim.client.api as apiclient

    creds = tmp_path / "credentials.json"
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")
    monkeypatch.setattr(apiclient, "call",
                        lambda *a, **k: {"user_id": "bob/x", "api_key": "ts_new", "starting_cash": "1"})
    result = runner.invoke(app, ["accounts", "create", "bob", "--cash", "1"])
    assert result.exit_code == 1, result.output
    assert "the new key for bob (shown once, not saved): ts_new" in result.stdout
    assert "would not be a credentials file tradesim reads" in _one_line_error(result.stderr)
    assert not creds.exists()  # before: saved, and every command after refused the file


@pytest.mark.parametrize("argv", [["accounts", "create", "bob", "--cash", "1"], ["accounts", "rotate-key", "bob"]])
def test_a_new_key_interrupted_on_its_way_to_the_file_is_shown(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """A probe: Ctrl-C while the credentials file's lock was awaited lost a key the API shows once."""
    import tradesim.client.api as apiclient

    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")
    monkeypatch.setattr(apiclient, "call",
                        lambda *a, **k: {"user_id": "bob", "api_key": "ts_new", "starting_cash": "1"})

    @contextlib.contextmanager
    def interrupted(settings: object) -> Iterator[dict[str, Any]]:
        raise KeyboardInterrupt
        yield {}

    monkeypatch.setattr(apiclient, "credentials_update", interrupted)
    result = runner.invoke(app, argv)
    assert result.exit_code == 130, result.output
    assert "the new key for bob (shown once, perhaps not saved): ts_new" in result.stdout


def test_a_new_key_that_cannot_be_saved_is_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tradesim.client.api as apiclient

    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")
    monkeypatch.setattr(apiclient, "call",
                        lambda *a, **k: {"user_id": "bob", "api_key": "ts_new", "starting_cash": "1"})

    def refuse(settings: object, data: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(apiclient, "save_credentials", refuse)
    result = runner.invoke(app, ["accounts", "create", "bob", "--cash", "1"])
    assert result.exit_code == 1
    assert "ts_new" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", [["accounts", "create", "alice", "--cash", "1"], ["accounts", "rotate-key", "alice"]])
def test_a_key_saved_keeps_the_keys_another_command_saved_meanwhile(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """A probe: three `accounts create` run at once each said "key saved", and the file kept the last one only:
    each wrote back the file as it had read it before its API call."""
    import tradesim.client.api as apiclient

    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"active": "alice", "users": {"alice": {"user_id": "alice", "api_key": "ts_old"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")

    def meanwhile(settings: object, *_args: object, **_kwargs: object) -> dict[str, str]:
        other = json.loads(creds.read_text())  # while this command waits for the API, `create carol` ends
        other["users"]["carol"] = {"user_id": "carol", "api_key": "ts_carol"}
        creds.write_text(json.dumps(other))
        return {"user_id": "alice", "api_key": "ts_new", "starting_cash": "1.00"}

    monkeypatch.setattr(apiclient, "call", meanwhile)
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(creds.read_text())["users"] == {"alice": {"user_id": "alice", "api_key": "ts_new"},
                                                      "carol": {"user_id": "carol", "api_key": "ts_carol"}}


def test_accounts_use_switches_under_the_files_lock_and_names_an_unknown_user(monkeypatch: pytest.MonkeyPatch,
                                                                              tmp_path: Path) -> None:
    creds = tmp_path / "credentials.json"
    users = {n: {"user_id": n, "api_key": f"ts_{n}"} for n in ("alice", "bob")}
    creds.write_text(json.dumps({"active": "alice", "users": users}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    result = runner.invoke(app, ["accounts", "use", "carol"])
    assert result.exit_code == 2, result.output
    assert "known: alice, bob" in _one_line_error(result.output)
    assert json.loads(creds.read_text())["active"] == "alice"
    assert runner.invoke(app, ["accounts", "use", "bob"]).exit_code == 0
    assert json.loads(creds.read_text()) == {"active": "bob", "users": users}


def test_replay_without_kafka_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.testing.net import free_port

    monkeypatch.setenv("TRADESIM_KAFKA__PORT", str(free_port()))  # no broker there
    result = runner.invoke(app, ["replay", "calm", "--symbols", "AAPL"])
    assert result.exit_code == 1  # before: a minute of librdkafka lines, then "600 were not acknowledged"
    assert "no Kafka broker answered" in _one_line_error(result.output)


@pytest.mark.parametrize(("status", "expected"), [
    (404, "the tradesim API (api.url)"), (200, "the tradesim API (api.url)"),
    (502, "API error 502 Bad Gateway: <html> <body>the gateway"),  # a load balancer before a stopped API
])
def test_an_answer_that_is_not_the_tradesim_apis_is_one_line(status: int, expected: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with foreign_server(status, b"<html>\n<body>the gateway\nsays no</body></html>") as url:
        monkeypatch.setenv("TRADESIM_API__URL", url)
        monkeypatch.setenv("TRADESIM_API__ADMIN_KEY", "k")
        result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 1  # before: a JSONDecodeError traceback, or the HTML page as the "error"
    assert expected in _one_line_error(result.output)


def test_an_order_takes_up_to_the_apis_largest_qty() -> None:
    from tradesim.cli.orders import order_body
    from tradesim.domain.events import MAX_QTY

    assert order_body("buy", "ACME", str(MAX_QTY), None, None, "day")["qty"] == MAX_QTY
    assert order_body("buy", "ACME", "007", None, None, "day")["qty"] == 7


@pytest.mark.parametrize("given", [None, "my-key-1"])
def test_an_order_whose_outcome_is_unknown_names_the_key_to_retry_with(given: str | None, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import re

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    unknown = {"code": "outcome_unknown", "message": "Kafka did not confirm the order in time"}
    with foreign_server(503, json.dumps(unknown).encode(), "application/json") as url:
        monkeypatch.setenv("TRADESIM_API__URL", url)
        result = runner.invoke(app, ["order", "buy", "ACME", "1", "--limit", "1e2"]
                               + (["--idempotency-key", given] if given else []))
    assert result.exit_code == 1
    line = _one_line_error(result.output)
    assert "(outcome_unknown)" in line
    # before: the key the CLI made up was never shown, so the only retry open was a new order
    named = re.search(r"run the same command with --idempotency-key (\S+)$", line)
    assert named is not None, line
    if given:
        assert named.group(1) == given
    else:  # the one it made up and sent
        assert re.fullmatch(r"[0-9a-f]{32}", named.group(1)), named.group(1)


@pytest.mark.parametrize("given", [None, "my-key-1"])
def test_an_order_interrupted_while_on_its_way_names_the_key_to_retry_with(given: str | None, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: Ctrl-C or SIGTERM (the CLI raises KeyboardInterrupt for both) while `order buy` waited for the API
    ended with a bare "interrupted", the key it had made up never shown, though the order may have been placed."""
    import tradesim.client.api as apiclient

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    sent: list[str] = []

    def interrupted(*_args: object, headers: dict[str, str], **_kwargs: object) -> None:
        sent.append(headers["Idempotency-Key"])
        raise KeyboardInterrupt

    monkeypatch.setattr(apiclient, "exchange", interrupted)
    result = runner.invoke(app, ["order", "sell", "ACME", "3"] + (["--idempotency-key", given] if given else []))
    assert result.exit_code == 130  # interrupted, as before
    assert sent == [given] if given else len(sent) == 1
    assert result.stderr == ("interrupted before the API answered: the request may have been done; to retry without "
                             f"a risk of placing it twice, run the same command with --idempotency-key {sent[0]}\n")


@pytest.mark.parametrize(("argv", "says"), [
    (["accounts", "create", "bob"], "if the account was created, its key is lost: the same create again finishes "
                                    "one whose create did not finish, else `tradesim accounts rotate-key bob` gives it "
                                    "another"),
    (["accounts", "rotate-key", "bob"], "if bob's key was replaced, the new one is lost: `tradesim accounts rotate-key "
                                        "bob` gives it another"),
])
def test_a_key_lost_to_an_interrupt_or_an_unknown_outcome_says_how_to_get_one(argv: list[str], says: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tradesim.client.api as apiclient

    monkeypatch.setattr(apiclient, "admin_key", lambda settings: "admin_key")

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(apiclient, "call", interrupted)
    result = runner.invoke(app, argv)
    assert result.exit_code == 130
    assert result.stderr == f"interrupted before the API answered: the request may have been done; {says}\n"

    def timed_out(*_args: object, **_kwargs: object) -> None:
        raise apiclient.OutcomeUnknown("no answer from the API at http://x within 15 s (ReadTimeout); the request "
                                       "may have been done")

    monkeypatch.setattr(apiclient, "call", timed_out)
    result = runner.invoke(app, argv)
    assert result.exit_code == 1
    assert _one_line_error(result.output).endswith(f"the request may have been done; {says}")


@pytest.mark.parametrize("body", [b"{}", b"[]", b"null", b'{"order_id": 7, "status": "accepted"}'])
def test_an_order_answered_in_another_shape_is_one_line_naming_the_key(body: bytes, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: a 2xx JSON answer of another shape (`{}`, `[]`, `null`) gave a KeyError or TypeError traceback,
    the key of an order that may have been placed not shown."""
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    with foreign_server(202, body, "application/json") as url:
        monkeypatch.setenv("TRADESIM_API__URL", url)
        result = runner.invoke(app, ["order", "buy", "ACME", "1", "--idempotency-key", "k-1"])
    assert result.exit_code == 1, result.output
    line = _one_line_error(result.output)
    assert f"POST {url}/orders answered 202 Accepted without " in line
    assert f"is {url} the tradesim API" in line
    assert line.endswith("run the same command with --idempotency-key k-1")


@pytest.mark.parametrize(("argv", "lacking", "says"), [
    (["accounts", "create", "bob"], "user_id", "if the account was created, its key is lost"),
    (["accounts", "rotate-key", "bob"], "user_id", "if bob's key was replaced, the new one is lost"),
    (["accounts", "reset", "bob"], "user_id", None),
    (["accounts", "list"], "accounts", None),
])
def test_an_account_answer_in_another_shape_is_one_line(argv: list[str], lacking: str | None, says: str | None,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_API__ADMIN_KEY", "k")
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    for body in (b"{}", b"[]", b"null"):
        with foreign_server(200, body, "application/json") as url:
            monkeypatch.setenv("TRADESIM_API__URL", url)
            result = runner.invoke(app, argv)
        assert result.exit_code == 1, result.output
        line = _one_line_error(result.output)
        if body == b"{}":
            assert f"answered 200 OK without the `{lacking}` the tradesim API's answer holds" in line
        else:
            assert f"answered 200 OK without the tradesim API's JSON: is {url} the tradesim API (api.url)?" in line
        assert says is None or says in line
    assert not (tmp_path / "credentials.json").exists()


@pytest.mark.parametrize(("argv", "body", "lacking"), [
    (["accounts", "show"], b"{}", "user_id"),
    (["portfolio"], b"{}", "user_id"),
    (["portfolio"], b'{"user_id": "a", "as_of_ms": 1, "cash": "1.00", "positions": [{"symbol": "X"}]}',
     "positions.0.qty"),
    (["orders"], b"{}", "orders"),
    (["order", "show", "o-1"], b'{"order_id": "o-1"}', "user_id"),
    (["trades"], b'{"trades": [], "total": "many"}', "next_cursor"),
    (["analytics", "volume"], b"{}", "user_id"),
    (["analytics", "pnl"], b"{}", "user_id"),
])
def test_a_read_answer_in_another_shape_is_one_line_naming_what_it_lacks(
        argv: list[str], body: bytes, lacking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: the read commands gave a KeyError or TypeError traceback on a 2xx of another server (`{}`)."""
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    with foreign_server(200, body, "application/json") as url:
        monkeypatch.setenv("TRADESIM_API__URL", url)
        result = runner.invoke(app, argv)
    assert result.exit_code == 1, result.output
    assert f"answered 200 OK without the `{lacking}` the tradesim API's answer holds (is {url} the tradesim API" in (
        _one_line_error(result.output))


@pytest.mark.parametrize(("argv", "status"), [(["order", "buy", "ACME", "1"], 202), (["order", "cancel", "o-1"], 202),
                                              (["order", "show", "o-1"], 200)])
def test_an_answer_lacking_a_field_its_model_has_a_default_for_is_one_line(
        argv: list[str], status: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `{"order_id": ...}` passed OrderAccepted's check (its `status` has a default), and `order buy` then
    gave a KeyError traceback reading it; the API writes every field of its model, so a field absent is not ours."""
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    order = {"order_id": "o-1", "user_id": "a", "symbol": "ACME", "side": "buy", "qty": 1, "type": "market",
             "time_in_force": "day", "status": "accepted", "placed_at_ms": 1}  # Order's fields without a default
    body = json.dumps(order if argv[1] == "show" else {"order_id": "o-1"}).encode()
    with foreign_server(status, body, "application/json") as url:
        monkeypatch.setenv("TRADESIM_API__URL", url)
        result = runner.invoke(app, argv)
    assert result.exit_code == 1, result.output
    lacking = "limit_price" if argv[1] == "show" else "status"
    assert f"without the `{lacking}` the tradesim API's answer holds (is {url} the tradesim API" in (
        _one_line_error(result.output))


# before: "clé" gave UnicodeEncodeError's traceback; " " and "a b" exit 1 blaming the stack ("the API is not
# reachable: Illegal header value")
@pytest.mark.parametrize("bad", ["clé", " ", "a b"])
def test_keys_that_cannot_travel_in_a_header_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       bad: str) -> None:
    import json

    monkeypatch.setenv("TRADESIM_API__ADMIN_KEY", bad)
    result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 2
    assert "api.admin_key" in _one_line_error(result.output)
    monkeypatch.delenv("TRADESIM_API__ADMIN_KEY")
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": bad}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    result = runner.invoke(app, ["portfolio"])
    assert result.exit_code == 2
    assert "not printable ASCII" in _one_line_error(result.output)


@pytest.mark.parametrize("order_id", [".", ".."])
def test_an_order_id_of_dots_is_refused_not_sent_as_a_path_step(order_id: str) -> None:
    for argv in (["order", "show", order_id], ["order", "cancel", order_id], ["trace", order_id]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output  # before: `/orders/.` became GET /orders, then a KeyError
        assert "is not an order id" in _one_line_error(result.output)


@pytest.mark.parametrize("argv", [["--region", ""], ["--region", "bad region!"], ["--out", "a-file"],
                                  ["--out", "a-file/sub"], ["--out", "a-dead-link"]])
def test_infra_synth_checks_its_options_before_building(argv: list[str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")  # the test's working folder
    (tmp_path / "a-dead-link").symlink_to(tmp_path / "nothing")
    result = runner.invoke(app, ["infra", "synth", *argv])
    assert result.exit_code == 2, result.output  # before: a jsii error after 15 s, or FileExistsError
    assert _one_line_error(result.output).startswith("error: --")


def test_infra_synth_refuses_a_clickhouse_url_without_showing_its_password() -> None:
    result = runner.invoke(app, ["infra", "synth", "--clickhouse-url", "http://default:hunter2@ch:notaport"])
    assert result.exit_code == 2, result.output
    assert "http://default:***@ch:notaport" in _one_line_error(result.output)
    assert "hunter2" not in result.output


def test_infra_synth_names_a_settings_mistake_before_it_makes_a_folder(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__PORT", "0")
    result = runner.invoke(app, ["infra", "synth", "--out", str(tmp_path / "deep" / "out")])
    assert result.exit_code == 2, result.output
    assert "kafka.port" in _one_line_error(result.output)
    assert not (tmp_path / "deep").exists()  # before: the empty folders were left behind


@pytest.mark.parametrize(("argv", "says"), [
    (["replay", "calm", "--symbols", ","], "--symbols names no symbol"),  # before: exit 0, nothing published
    (["replay", "calm", "--symbols", " "], "--symbols names no symbol"),
    (["replay", "calm", "--symbols", "AAPL,a b"], "invalid symbol"),
])
def test_a_replay_subset_names_symbols(argv: list[str], says: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert says in _one_line_error(result.output)


@pytest.mark.parametrize("argv", [["orders", "--symbol", "???"], ["prices", "a b"]])
def test_every_symbol_option_is_checked_like_the_others(argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert "invalid symbol" in _one_line_error(result.output)


def test_a_bench_without_a_stack_says_so_in_one_line() -> None:
    result = runner.invoke(app, ["bench", "queries", "--trades", "0", "--seconds", "1"])
    assert result.exit_code == 1  # before: RuntimeError's traceback
    assert "no admin key" in _one_line_error(result.output)


def test_a_reader_that_went_away_ends_the_command_with_141_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the OSError branch printed "error: ..."; then click's own answer, exit 1 (a server problem, by the
    CLI's codes). What is left to write goes to /dev/null (not this test's output: dup2 is recorded only)."""
    from tradesim.cli.errors import cli_errors

    moved: list[int] = []
    monkeypatch.setattr(os, "dup2", lambda _src, dst: moved.append(dst))

    @cli_errors
    def printing() -> None:
        raise BrokenPipeError(32, "Broken pipe")  # `tradesim logs -f | head -3` once head has its lines

    monkeypatch.setattr(sys.stdout, "fileno", lambda: 1)  # pytest's capture may have none
    with pytest.raises(SystemExit) as ended:
        printing()
    assert ended.value.code == 141  # 128 + SIGPIPE, as a shell's tools: did not finish, not a server problem
    assert moved == [1]


def test_saving_credentials_touches_no_file_beside_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    from tradesim.client.api import save_credentials
    from tradesim.settings import load_settings

    path = tmp_path / "c" / "keys.json"
    path.parent.mkdir()
    victim = tmp_path / "important.txt"
    victim.write_text("mine")
    (path.parent / "keys.tmp").symlink_to(victim)  # before: emptied, filled with the keys, renamed over
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(path))
    save_credentials(load_settings(), {"users": {}, "active": None})
    assert victim.read_text() == "mine"
    assert (path.parent / "keys.tmp").is_symlink()
    assert not path.is_symlink()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.json", "keys.tmp"]  # no temporary left


def test_a_request_sent_and_never_answered_is_not_called_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that takes the connection and never answers: the request may have been done (before: "not
    reachable (is `tradesim up` running?)", which invites placing the order again)."""
    import socket

    from tradesim.client.api import call
    from tradesim.services.api.schemas import OrderAccepted
    from tradesim.settings import load_settings
    from tradesim.stack.errors import StackError

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody reads
        monkeypatch.setenv("TRADESIM_API__URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(StackError) as raised:
            call(load_settings(), "POST", "/orders", "k", shape=OrderAccepted, json_body={}, timeout_s=0.3)
    assert "no answer from the API" in str(raised.value)
    assert "may have been done" in str(raised.value)


def test_an_order_never_sent_does_not_ask_for_a_retry_with_its_key(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tradesim.testing.net import free_port

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("TRADESIM_API__URL", f"http://127.0.0.1:{free_port()}")
    result = runner.invoke(app, ["order", "buy", "ACME", "1"])
    assert result.exit_code == 1
    line = _one_line_error(result.output)
    assert "the API is not reachable" in line
    assert "--idempotency-key" not in line  # refused before anything was sent: nothing to be careful about


# ---- hostile settings and files (the thirty-eighth session's probe): one line, the right exit code ---------------

def test_settings_nested_past_the_parsers_depth_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "tradesim.toml").write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2, result.output  # before: a RecursionError traceback of ~3,000 lines
    assert "nested too deep" in _one_line_error(result.output)


def test_a_credentials_file_nested_past_the_parsers_depth_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    creds = tmp_path / "deep.json"
    creds.write_text("[" * 100_000 + "]" * 100_000)
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    result = runner.invoke(app, ["orders"])
    assert result.exit_code == 2, result.output
    assert "cannot read the credentials file" in _one_line_error(result.output)


@pytest.mark.parametrize(("status", "says"), [(202, "the tradesim API (api.url)"), (422, "the tradesim API (api.url)"),
                                              (503, "API error 503 Service Unavailable: [[[[")])
def test_an_answer_nested_past_the_parsers_depth_is_one_line(status: int, says: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `[` × 100,000 as the API's answer gave a RecursionError traceback (the order's key unnamed)."""
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "ts_k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    with foreign_server(status, b"[" * 100_000, "application/json") as url:
        monkeypatch.setenv("TRADESIM_API__URL", url)
        result = runner.invoke(app, ["order", "buy", "ACME", "1", "--idempotency-key", "k-1"])
    assert result.exit_code == 1, result.output
    line = _one_line_error(result.output)
    assert says in line
    assert line.endswith("--idempotency-key k-1") == (status != 422)  # a 4xx: the order was refused


def test_an_admin_key_file_that_cannot_travel_in_a_header_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "home" / "stack" / "api" / "admin.key"
    key.parent.mkdir(parents=True)
    key.write_text("key with é\n")
    key.chmod(0o600)
    result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 2, result.output  # before: UnicodeEncodeError's traceback from the HTTP client
    assert "not printable ASCII" in _one_line_error(result.output)
    key.unlink()
    os.mkfifo(key, 0o600)
    result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 2, result.output  # before: waited for a writer for ever
    assert "not a regular file" in _one_line_error(result.output)


def test_no_admin_key_yet_is_the_stack_not_started_exit_1() -> None:
    result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 1, result.output  # was 2, as if the user had made a mistake
    assert "no admin key" in _one_line_error(result.output)


def test_a_region_that_cannot_be_part_of_a_host_name_is_a_settings_mistake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_DYNAMODB__REGION", "a b/c")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2, result.output  # before: http.client.InvalidURL's traceback from `status`
    assert "dynamodb.region" in _one_line_error(result.output)


def test_aws_dynamodb_without_credentials_is_a_status_row_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("TRADESIM_DYNAMODB__USE_AWS", "true")
    result = runner.invoke(app, ["status", "--only", "dynamodb", "--json"])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "credentials" in result.output


@pytest.mark.parametrize(("component", "setting"), [
    ("opensearch", "TRADESIM_OPENSEARCH__URL"), ("api", "TRADESIM_API__URL"), ("flink", "TRADESIM_FLINK__REST_URL")])
@pytest.mark.parametrize(("body", "content_type"), [
    (b"<html>another server</html>", "text/html"), (b"[1]", "application/json"),
    (b'{"taskmanagers": "1"}', "application/json")])
def test_another_server_at_a_components_address_is_its_status_row_not_a_traceback(
        component: str, setting: str, body: bytes, content_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `status` (and the watchdog's and `up`'s look at the stack) ended in opensearch-py's
    SerializationError, an AttributeError of the API's check or a TypeError of Flink's."""
    with foreign_server(200, body, content_type) as url:
        monkeypatch.setenv(setting, url)
        result = runner.invoke(app, ["status", "--only", component, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)["components"]
    assert (row["state"], row["healthy"]) == ("external", False)


def test_a_since_of_thousands_of_digits_is_a_user_mistake() -> None:
    result = runner.invoke(app, ["trades", "--since", "9" * 5000 + "s"])
    assert result.exit_code == 2, result.output  # before: int()'s ValueError traceback (over 4,300 digits)
    assert "--since" in _one_line_error(result.output)


def test_a_search_text_too_long_for_a_url_is_a_user_mistake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "alice", "users": {"alice": {"user_id": "alice", "api_key": "ts_k"}}}))
    creds.chmod(0o600)
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    result = runner.invoke(app, ["trades", "--q", "x" * 70_000])
    assert result.exit_code == 2, result.output  # before: httpx.InvalidURL's traceback
    assert "cannot be sent" in _one_line_error(result.output)
    # a probe: a byte that is not UTF-8 reaches the command as a surrogate (before: UnicodeEncodeError's traceback)
    result = runner.invoke(app, ["trades", "--q", "caf\udce9"])
    assert result.exit_code == 2, result.output
    assert "bytes that are not UTF-8" in _one_line_error(result.output)


@pytest.mark.parametrize(("url", "says"), [
    ("redis://127.0.0.1:9/0?ssl_cert_reqs=none", "does not take here: 'ssl_cert_reqs'"),  # TLS options need rediss
    ("redis://127.0.0.1:9/0?foo=bar", "does not take here: 'foo'"),
    ("redis://127.0.0.1:9/0?db=x", "Invalid value for 'db'"),
    ("redis://127.0.0.1:9/0?protocol=9", "protocol must be either 2 or 3"),  # a RedisError, not a ValueError
])
def test_a_redis_url_whose_options_the_client_refuses_is_a_settings_mistake(monkeypatch: pytest.MonkeyPatch,
                                                                            url: str, says: str) -> None:
    monkeypatch.setenv("TRADESIM_REDIS__URL", url)
    for argv in (["status"], ["prices", "ACME"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output  # before: TypeError or ValueError tracebacks when connecting
        line = _one_line_error(result.output)
        assert "redis.url" in line, line
        assert says in line, line


@pytest.mark.parametrize(("argv", "says"), [
    (["accounts", "create", "Alice!", "--cash", "5"], "'Alice!' is not a user id"),  # before: sent, then the
    (["accounts", "create", "", "--cash", "5"], "'' is not a user id"),  # API's regex, or "not reachable"
    (["accounts", "create", "hal", "--cash", "1.005"], "--cash must be an amount like 100000"),
    (["accounts", "create", "hal", "--cash", "Infinity"], "--cash must be an amount like 100000"),
    (["accounts", "create", "hal", "--cash", "1" + "0" * 15], "at most 15 digits"),
    (["accounts", "create", "hal", "--cash", "1e26"], "at most 15 digits"),  # a review: decimal.InvalidOperation
    (["accounts", "create", "hal", "--cash", "1e100"], "at most 15 digits"),
    (["accounts", "create", "hal", "--cash", "1_000"], "--cash must be an amount like 100000"),  # before: 1000.00
])
def test_accounts_create_checks_its_arguments_before_asking_the_api(argv: list[str], says: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert says in _one_line_error(result.output)


def test_cash_is_sent_as_the_api_spells_it() -> None:
    from tradesim.cli.accounts import cash_param

    assert [cash_param(c) for c in ("1e5", " 5", "2500.50", "-0", "0.10", "2500.500", "0.100")] == [
        "100000.00", "5.00", "2500.50", "0.00", "0.10", "2500.50", "0.10"]


@pytest.mark.parametrize(("env", "value", "says"), [
    ("TRADESIM_API__CREDENTIALS_FILE", "", "not empty"),  # before: the current folder, "not a regular file"
    ("TRADESIM_STACK__JAVA_HOME", "a\0b".replace("\0", "\\u0000"), None),
    ("TRADESIM_MARKET__SCENARIO", "", "at least 1 character"),
])
def test_an_empty_or_impossible_path_setting_is_a_settings_mistake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                  env: str, value: str, says: str | None) -> None:
    if says is None:  # a NUL cannot be in an environment variable: the settings file holds it
        (tmp_path / "tradesim.toml").write_text(f'[stack]\njava_home = "{value}"\n')
        says = "no NUL character"
    else:
        monkeypatch.setenv(env, value)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 2, result.output  # before: ValueError's traceback (NUL) or a later, other error
    line = _one_line_error(result.output)
    assert says in line, line


def test_a_backup_refused_before_any_step_prints_nothing_but_its_error(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "x").write_text("")
    result = runner.invoke(app, ["backup", str(tmp_path / "adir")])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # before: an empty line from the progress display, then the error
    assert "not an empty folder" in _one_line_error(result.stderr)


def test_replay_of_a_symbol_the_scenario_lacks_is_a_mistake_before_kafka_is_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.testing.net import free_port

    monkeypatch.setenv("TRADESIM_KAFKA__PORT", str(free_port()))  # no broker there
    result = runner.invoke(app, ["replay", "calm", "--symbols", "NOPE"])
    assert result.exit_code == 2, result.output  # before: exit 1, "no Kafka broker answered" with the stack down
    assert "unknown symbol NOPE" in result.output


def test_prices_are_sent_as_the_api_spells_them() -> None:
    """Prices are judged by their value (the domain's `price_error`), so the cap and zeros past the 4th place pass."""
    from tradesim.cli.orders import order_body

    bodies = [order_body("buy", "ACME", "1", p, None, "day")["limit_price"]
              for p in ("1000000.00000", "1e2", "0.0001", "12.3400000")]
    assert bodies == ["1000000", "100", "0.0001", "12.34"]


def test_every_command_prints_text_as_written() -> None:
    """Paths, names and descriptions users wrote may hold [brackets] or :codes:: every console a command prints
    with reads no markup or emoji codes (a review found `[/]` in a folder's name ending in a MarkupError)."""
    import importlib
    import pkgutil

    from rich.console import Console

    import tradesim.cli

    consoles = {f"{info.name}.{name}": value for info in pkgutil.iter_modules(tradesim.cli.__path__)
                for name, value in vars(importlib.import_module(f"tradesim.cli.{info.name}")).items()
                if isinstance(value, Console)}
    assert len(consoles) >= 10
    assert [name for name, c in consoles.items() if c._markup or c._emoji] == []


def test_a_rate_limit_out_of_range_is_named_by_its_option() -> None:
    """A review: `--rate-limit 0` reached the API, whose 422 named the body's field, not the option."""
    result = runner.invoke(app, ["accounts", "create", "hal", "--rate-limit", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--rate-limit'" in result.output


def test_a_command_stopped_by_ctrl_c_says_so(tmp_path: Path) -> None:
    """A probe: `run` or `smoke` stopped by Ctrl-C or SIGTERM exited 130 with nothing on stderr."""
    import signal
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    # SIGINT as a terminal has it: a background job (a CI run started with `&`) passes it on ignored
    code = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from tradesim.cli import app as cli; "
            "cli.app.command('nap')(lambda: (print('napping', flush=True), time.sleep(60))); cli.main()")
    proc = subprocess.Popen([sys.executable, "-c", code, "nap"], env={**env, "TRADESIM_HOME": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "napping\n"
        proc.send_signal(signal.SIGINT)
        _, errors = proc.communicate(timeout=30)
        assert (proc.returncode, errors) == (130, "interrupted\n")
    finally:
        proc.kill()
        proc.communicate()


def test_a_termination_signal_ends_a_command_as_ctrl_c_does(tmp_path: Path) -> None:
    """A probe killed `backup` with SIGTERM: no clean-up ran, the jobs stayed stopped with their only savepoints
    in its unfinished folder. Every command now ends on SIGTERM or SIGHUP as on Ctrl-C (`logs -f` then returns
    quietly, or exits 130 when the signal comes before it follows, as Ctrl-C then does); before, the signal's
    default ended the process on the spot (-15)."""
    import signal
    import subprocess

    log = tmp_path / "home" / "stack" / "kafka" / "server.log"
    log.parent.mkdir(parents=True)
    log.write_text("the first line\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    # SIGHUP as a terminal's session has it (a CI run under nohup passes it on ignored, which `main` keeps)
    code = "import signal; signal.signal(signal.SIGHUP, signal.SIG_DFL); from tradesim.cli.app import main; main()"
    for sig in (signal.SIGTERM, signal.SIGHUP):
        proc = subprocess.Popen([sys.executable, "-c", code, "logs", "kafka", "-f"],
                                env={**env, "TRADESIM_HOME": str(tmp_path / "home")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "the first line\n"  # it follows the log now
            proc.send_signal(sig)
            _, errors = proc.communicate(timeout=30)
            # (a probe: exit 130 said nothing; a CI log showed no reason the run stopped)
            assert (proc.returncode, errors) in ((0, ""), (130, "interrupted\n")), (sig, proc.returncode, errors)
        finally:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("sig_name", ["SIGINT", "SIGTERM"])
def test_a_second_signal_ends_a_command_that_swallowed_the_first(tmp_path: Path, sig_name: str) -> None:
    """A probe: a strategy looping in `try: ... except BaseException: pass` outlived its time limit and the SIGTERM
    of `timeout` (which the CLI turns into KeyboardInterrupt); only SIGKILL ended it."""
    import signal
    import subprocess
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    code = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from tradesim.cli import app as cli\n"
            "def swallow():\n"
            "    while True:\n"
            "        try:\n"  # from before the line the test waits for: the first signal always lands in here
            "            print('looping', flush=True)\n"
            "            time.sleep(60)\n"
            "        except BaseException:\n"
            "            print('swallowed', flush=True)\n"
            "cli.app.command('swallow')(swallow); cli.main()")
    proc = subprocess.Popen([sys.executable, "-c", code, "swallow"], env={**env, "TRADESIM_HOME": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sig = getattr(signal, sig_name)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "looping\n"
        proc.send_signal(sig)
        assert proc.stdout.readline() == "swallowed\n"  # the first: a KeyboardInterrupt, caught
        assert proc.stdout.readline() == "looping\n"
        time.sleep(SAME_REQUEST_S)  # a second request, not the first delivered twice (which is ignored)
        proc.send_signal(sig)
        _, errors = proc.communicate(timeout=30)
        assert (proc.returncode, errors) == (130, "interrupted again: stopped at once, without clean-up\n")
    finally:
        proc.kill()
        proc.communicate()


def test_a_signal_delivered_twice_at_once_is_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: a CI runner signalling the process group (or a wrapper forwarding Ctrl-C) delivers one request
    twice; that must not skip the clean-up the first one started."""
    import signal

    import tradesim.cli.app as cli_app

    now = [100.0]
    exits: list[int] = []
    monkeypatch.setattr(cli_app, "_first_signal", None)
    monkeypatch.setattr(cli_app, "_clock", lambda: now[0])
    monkeypatch.setattr(cli_app, "_exit", exits.append)
    with pytest.raises(KeyboardInterrupt):
        cli_app._interrupt(signal.SIGINT, None)
    now[0] += cli_app.SAME_REQUEST_S / 2
    cli_app._interrupt(signal.SIGTERM, None)  # the same request: ignored
    assert exits == []
    stopped: list[bool] = []
    monkeypatch.setattr(cli_app, "stop_children", lambda: stopped.append(True) or 0)
    now[0] += cli_app.SAME_REQUEST_S
    cli_app._interrupt(signal.SIGINT, None)  # a second request: at once
    assert exits == [130]
    assert stopped == [True]  # its children first (a probe: orphaned `flink run` clients submitted jobs later)


@pytest.mark.parametrize(("env", "value", "says"), [
    ("TRADESIM_KAFKA__PORT", "abc", "must be a whole number of digits"),
    ("TRADESIM_API__KAFKA_TIMEOUT_S", "inf", "finite number"),
    # a probe: accepted, then Prometheus failed to start with its --help text
    ("TRADESIM_OBSERVABILITY__RETENTION", "forever", "observability.retention"),
])
def test_a_setting_is_refused_in_its_own_words(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                               says: str) -> None:
    """A review: validators' messages came with pydantic's "Value error, " in front (one helper drops it now,
    for settings, the API, scenario files, the TUI and the strategy SDK alike)."""
    monkeypatch.setenv(env, value)
    result = runner.invoke(app, ["scenarios", "list"])
    assert result.exit_code == 2, result.output
    line = _one_line_error(result.output)
    assert says in line
    assert "Value error" not in line


def test_nohup_keeps_a_command_alive_past_its_terminal(tmp_path: Path) -> None:
    """A review: `main` replaced an ignored SIGHUP (what `nohup` sets) with its Ctrl-C handler."""
    import signal
    import subprocess

    code = ("import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN); import sys; "
            "sys.argv = ['tradesim', 'logs', 'kafka', '-f']; from tradesim.cli.app import main; main()")
    log = tmp_path / "home" / "stack" / "kafka" / "server.log"
    log.parent.mkdir(parents=True)
    log.write_text("the first line\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    proc = subprocess.Popen([sys.executable, "-c", code], env={**env, "TRADESIM_HOME": str(tmp_path / "home")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "the first line\n"
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)  # still following: the hangup is ignored, as nohup asked
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("option", ["--junit", "--json"])
def test_an_output_path_too_long_is_a_user_mistake(option: str) -> None:
    """A review: exit 1 ("File name too long"), as if the system had failed."""
    result = runner.invoke(app, ["run", "round-trip-fees", option, "/tmp/" + "a" * 300 + ".x"])
    assert result.exit_code == 2, result.output
    assert "File name too long" in _one_line_error(result.output)


@pytest.mark.parametrize(("component", "hint"), [("redis", "start it with `tradesim up`"),
                                                 ("market", "not started: `tradesim market start`")])
def test_logs_of_a_component_never_started_says_how_to_start_it(component: str, hint: str) -> None:
    result = runner.invoke(app, ["logs", component])
    assert result.exit_code == 1
    line = _one_line_error(result.output)
    assert line.startswith(f"error: {component} has no log yet at "), line
    assert line.endswith(f"({hint})"), line


def test_smoke_stops_what_it_started_when_bringing_the_stack_up_is_interrupted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: Ctrl-C while `smoke` brought the stack up left the servers it had started running."""
    from tradesim.stack.supervisor import Supervisor

    stopped: list[list[str]] = []

    def interrupted(self: Supervisor) -> list[object]:
        raise KeyboardInterrupt

    def down(self: Supervisor, purge: bool = False) -> list[str]:
        stopped.append([c.name for c in self.components])
        return []

    monkeypatch.setattr(Supervisor, "up", interrupted)
    monkeypatch.setattr(Supervisor, "down", down)
    result = runner.invoke(app, ["smoke"])
    assert result.exit_code != 0
    assert len(stopped) == 1
    assert {"kafka", "api"} <= set(stopped[0])  # nothing ran before: all of it is this command's to stop


def test_smoke_with_a_scenarios_folder_that_is_not_there_is_a_settings_mistake(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: it brought the stack up, then counted every smoke scenario failed (exit 1)."""
    monkeypatch.setenv("TRADESIM_SCENARIOS_DIR", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["smoke"])
    assert result.exit_code == 2, result.output
    assert "unknown scenario" in result.output
    assert "bringing the stack up" not in result.output


def test_up_that_leaves_a_component_unhealthy_says_what_runs_and_how_to_go_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "not healthy after up: redis" alone, though what did start keeps running."""
    from tradesim.stack.supervisor import ComponentStatus, Supervisor

    monkeypatch.setattr(Supervisor, "up", lambda self: [
        ComponentStatus(name="kafka", state="running", healthy=True),
        ComponentStatus(name="redis", state="running", healthy=False, detail="PING timed out")])
    result = runner.invoke(app, ["up", "--only", "kafka,redis"])
    assert result.exit_code == 1
    line = _one_line_error(result.stderr)
    assert "not healthy after up: redis" in line
    assert "`tradesim logs redis`" in line
    assert "`tradesim down`" in line


@contextlib.contextmanager
def _market_data(handler: Callable[[Any], None], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real WebSocket server on an ephemeral port, where `prices` connects; `handler(ws)` serves a connection.
    Yields its URL."""
    import threading

    from websockets.sync.server import serve

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        monkeypatch.setenv("TRADESIM_MARKETDATA__WS_URL", url)
        try:
            yield url
        finally:
            server.shutdown()


def _service_with_the_limit(requests: list[list[str]]) -> Callable[[Any], None]:
    """Answers `subscribe` as the market-data service does, refusing a request of more than its limit of symbols."""
    from tradesim.domain.events import MAX_SYMBOLS_PER_REQUEST
    from tradesim.testing.factories import tick

    def handler(ws: Any) -> None:
        for raw in ws:
            symbols = json.loads(raw)["symbols"]
            requests.append(symbols)
            if len(symbols) > MAX_SYMBOLS_PER_REQUEST:
                ws.send(json.dumps({"type": "error", "code": "bad_request", "message": "symbols must be a non-empty "
                                    f"list of at most {MAX_SYMBOLS_PER_REQUEST} symbol strings"}))
                continue
            ws.send(json.dumps({"type": "subscribed", "symbols": symbols}))
            for s in symbols:
                ws.send(json.dumps({"type": "snapshot", "data": tick(s, 1).model_dump(mode="json"), "age_ms": 5}))

    return handler


@pytest.mark.parametrize("given", [True, False])
def test_prices_of_more_symbols_than_one_request_takes_asks_in_requests_the_service_takes(
        monkeypatch: pytest.MonkeyPatch, given: bool) -> None:
    """A probe: `prices` with more than 500 symbols (named, or every cached one when none is) sent one request,
    which the service refused; every row said `no data` after the timeout, exit 0."""
    from tradesim.adapters.redis.prices import PriceCache

    symbols = [f"S{i:04d}" for i in range(1001)]
    monkeypatch.setattr(PriceCache, "symbols", lambda self: symbols)
    requests: list[list[str]] = []
    with _market_data(_service_with_the_limit(requests), monkeypatch):
        result = runner.invoke(app, ["prices", *(symbols if given else []), "--timeout", "3"])
    assert result.exit_code == 0, result.output
    assert "no data" not in result.output
    assert all(s in result.output for s in symbols)
    assert requests == [symbols[:500], symbols[500:1000], symbols[1000:]]


def test_prices_refused_by_the_service_say_why_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the refusal counted as the subscription's answer and was ignored: `no data`, exit 0."""
    def refusing(ws: Any) -> None:
        for _ in ws:
            ws.send(json.dumps({"type": "error", "code": "bad_request", "message": "symbols must be\nshorter"}))

    with _market_data(refusing, monkeypatch) as url:
        result = runner.invoke(app, ["prices", "AAPL", "--timeout", "3"])
    assert result.exit_code == 1, result.output
    assert _one_line_error(result.output) == (f"error: the market-data service at {url} answered bad_request: "
                                              "symbols must be\\nshorter")


def _snapshot(**changes: object) -> str:
    from tradesim.testing.factories import tick

    data = tick("AAPL", 1).model_dump(mode="json") | changes
    return json.dumps({"type": "snapshot", "data": {k: v for k, v in data.items() if v is not None}, "age_ms": 5})


@pytest.mark.parametrize("watch", [False, True])
@pytest.mark.parametrize("frame", [
    pytest.param(b"\x00\x01", id="binary"), pytest.param("not JSON", id="text"), pytest.param("[1, 2]", id="list"),
    pytest.param("[" * 100_000, id="nested-too-deep"), pytest.param('{"type": 5}', id="type-5"),
    pytest.param('{"type": "snapshot"}', id="no-data"),
    pytest.param('{"type": "snapshot", "data": [1]}', id="data-list"),
    pytest.param(_snapshot(bid="x"), id="bid-x"), pytest.param(_snapshot(event_time_ms=1e20), id="year-3e9"),
    pytest.param(_snapshot(symbol=None), id="no-symbol"),
    pytest.param('{"type": "error", "code": "unknown_symbol", "symbols": "AAPL"}', id="symbols-string"),
    pytest.param('{"type": "error", "code": ["x"]}', id="code-list"),
])
def test_prices_from_a_service_that_sends_what_it_never_does_end_with_one_line(
        monkeypatch: pytest.MonkeyPatch, frame: str | bytes, watch: bool) -> None:
    """A probe: a binary or non-JSON frame, a list, a snapshot without data, a bid of "x" each ended `prices` with a
    traceback, and a time past year 9999 with "market-data service not reachable ... [Errno 75]"."""
    def answer(ws: Any) -> None:
        ws.recv()
        ws.send(frame)  # and closes: before, --watch waited on for frames after one it ignored

    with _market_data(answer, monkeypatch) as url:
        result = runner.invoke(app, ["prices", "AAPL", "--timeout", "3", *(["--watch"] if watch else [])])
    assert result.exit_code == 1, result.output
    assert _one_line_error(result.stderr) == (f"error: unexpected frame from {url}: is it the tradesim market-data "
                                              "service?")


@pytest.mark.parametrize(("answer", "says"), [
    ('{"type": "heartbeat", "ts_ms": 1}', "did not answer the subscription within 0.5 s"),  # stuck on Redis
    ('{"type": "error", "code": "unavailable", "message": "Redis is away"}', "cannot read prices now: Redis"),
])
def test_prices_from_a_service_that_never_answers_exit_1(monkeypatch: pytest.MonkeyPatch, answer: str,
                                                        says: str) -> None:
    """A probe: with the market-data service hung (or its Redis away), `prices AAPL` printed `no data` and exited
    0 after its timeout."""
    import threading

    from websockets.sync.server import serve

    def silent(ws: object) -> None:
        for _ in ws:  # type: ignore[attr-defined]  # reads the subscription; answers no price
            ws.send(answer)  # type: ignore[attr-defined]

    with serve(silent, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("TRADESIM_MARKETDATA__WS_URL", f"ws://127.0.0.1:{server.socket.getsockname()[1]}/")
        result = runner.invoke(app, ["prices", "AAPL", "--timeout", "0.5"])
        server.shutdown()
    assert result.exit_code == 1, result.output
    assert says in result.stderr


@pytest.mark.parametrize("code", [1000, 1001, 1011])
def test_prices_watch_says_when_the_service_closes_the_connection_and_exits_1(monkeypatch: pytest.MonkeyPatch,
                                                                            code: int) -> None:
    """A probe: `prices --watch` ended with exit 0 and no word when the service stopped or restarted (close 1001),
    its table frozen as if it were still live; a dropped link said "not reachable ... is `tradesim up` running?"."""
    def closing(ws: Any) -> None:
        ws.recv()
        ws.send(json.dumps({"type": "subscribed", "symbols": ["AAPL"]}))
        ws.send(_snapshot())
        ws.close(code, "bye")

    with _market_data(closing, monkeypatch) as url:
        result = runner.invoke(app, ["prices", "AAPL", "--watch", "--timeout", "3"])
    assert result.exit_code == 1, result.output
    line = _one_line_error(result.stderr)
    assert line.startswith(f"error: the market-data service at {url} closed the connection (received {code} ")
    assert "AAPL" in result.stdout  # the table as it was


@pytest.mark.parametrize("sig_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_the_commands_load_ends_with_one_line_and_exit_130(sig_name: str) -> None:
    """A probe: Ctrl-C in the first ~2 s of any command (loading the commands' modules) printed a traceback, and
    SIGTERM or SIGHUP ended it at once with 143 or 129: the handlers came after the imports. The console script
    now installs them first. Here the commands' module takes as long as it must to load: the child says when it
    starts loading it, and the signal comes then (a first version sent it on a timing guess, and a fast box had
    loaded everything by then)."""
    import signal
    import subprocess

    code = ("import signal, sys, time\n"
            # as a terminal's session has them: CI runs this in the background, where Ctrl-C comes ignored (which
            # the entry point keeps, as asked)
            "signal.signal(signal.SIGHUP, signal.SIG_DFL); signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "class SlowLoad:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'tradesim.cli.app':\n"
            "            print('loading', flush=True)\n"
            "            time.sleep(60)\n"
            "        return None\n"
            "sys.meta_path.insert(0, SlowLoad())\n"
            "from tradesim.cli.entry import main; main()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    proc = subprocess.Popen([sys.executable, "-c", code, "orders"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "loading\n"
        proc.send_signal(getattr(signal, sig_name))
        out, errors = proc.communicate(timeout=30)
        assert (proc.returncode, out, errors) == (130, "", "interrupted\n")
    finally:
        proc.kill()
        proc.communicate()


def test_a_reader_that_stops_early_is_no_server_problem(tmp_path: Path) -> None:
    """A probe: `tradesim scenarios show calm | head -1` exited 1 (an environment or server problem, by the CLI's
    codes) with nothing said: rich's answer to a closed pipe. Now 141 (128 + SIGPIPE), quietly, as a shell's own
    tools end. The output here (a table of 3,000 orders, ~270 KB) is larger than a pipe holds, so the command
    writes into a pipe its reader has closed."""
    import subprocess

    rows = "".join(f"  - {{at: {i}s, account: a, symbol: AAA, side: buy, qty: 1}}\n" for i in range(3000))
    scenario = tmp_path / "big.yaml"
    scenario.write_text("id: big\nstart: 2024-01-02T14:30:00Z\nduration_s: 4000\ntick_interval_ms: 1000\nseed: 1\n"
                        "symbols:\n  - {symbol: AAA, initial_price: \"1\"}\naccounts:\n  - {name: a, cash: \"1000\"}\n"
                        "orders:\n" + rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    proc = subprocess.Popen([sys.executable, "-c", "from tradesim.cli.entry import main; main()", "scenarios",
                             "show", str(scenario)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"big (")
    proc.stdout.close()  # as `head -1` does
    _, errors = proc.communicate(timeout=60)
    assert (proc.returncode, errors) == (141, b"")


@pytest.mark.parametrize(("status", "body"), [(404, b'{"error": "not found"}'), (200, b"[1, 2]"),
                                              (200, b'{"p": {"name": "x"}}')])
@pytest.mark.parametrize("command", ["list", "clear"])
def test_chaos_against_a_server_that_is_not_toxiproxy_is_one_line(monkeypatch: pytest.MonkeyPatch, status: int,
                                                                 body: bytes, command: str) -> None:
    """A probe: a 4xx answer (another service on `chaos.api_port`) or JSON of another shape was a traceback."""
    with foreign_server(status, body, "application/json") as url:
        monkeypatch.setenv("TRADESIM_CHAOS__ENABLED", "true")
        monkeypatch.setenv("TRADESIM_CHAOS__API_PORT", url.rsplit(":", 1)[1])
        result = runner.invoke(app, ["chaos", command])
    if command == "clear" and status == 200:
        assert result.exit_code == 0, result.output  # POST /reset answered: nothing to read in it
        return
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = [ln for ln in result.output.strip().splitlines() if ln.strip()][-1]  # `list` prints the faults first
    assert last.startswith("error: "), result.output
    assert "Toxiproxy" in last, result.output


def test_a_qty_written_with_thousands_of_leading_zeros_is_read_not_a_traceback() -> None:
    """A review: the check read the QTY without its zeros, the body with them (int() refuses 4,300 digits)."""
    from tradesim.cli.orders import order_body

    assert order_body("buy", "AAPL", "0" * 5000 + "7", None, None, "day")["qty"] == 7


def test_accounts_list_marks_a_pending_account(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.client import api

    accounts = [{"user_id": u, "starting_cash": "1.00", "created_at_ms": 1, "cash": "1.00", "positions": {},
                 "pending": u == "bob"} for u in ("bob", "carol")]
    monkeypatch.setattr(api, "admin_key", lambda settings: "k")
    monkeypatch.setattr(api, "call", lambda *a, **k: {"accounts": accounts})
    result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 0, result.output
    assert "bob (pending)" in result.output
    assert "carol (pending)" not in result.output
