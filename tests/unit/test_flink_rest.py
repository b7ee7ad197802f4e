"""`FlinkRest.jobs` lists jobs whose checkpoint statistics are not there yet, and still reports a real refusal;
so does what reads it (`tradesim jobs list`, the stack exporter)."""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from tradesim.adapters.flink.client import FlinkRest
from tradesim.adapters.flink.errors import FlinkRequestError
from tradesim.adapters.kafka import client as kafka_client
from tradesim.cli.app import app
from tradesim.settings import load_settings
from tradesim.stack import exporter
from tradesim.testing.foreign import scripted_server

JOBS = [{"jid": "a", "name": "execution", "state": "RUNNING", "start-time": 3},
        {"jid": "b", "name": "bars", "state": "RUNNING", "start-time": 2},
        {"jid": "c", "name": "persistence", "state": "INITIALIZING", "start-time": 1}]
Cluster = tuple[str, dict[str, int], list[str]]  # its URL, the checkpoints status per job id, the paths asked


class _Json(http.server.BaseHTTPRequestHandler):
    """A REST handler answering JSON, quietly."""

    def reply(self, code: int, body: object) -> None:
        self.send_response(code)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def _serving(handler: type[_Json]) -> Iterator[str]:
    """The handler on a loopback port; yields its base URL."""
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A REST endpoint answering /jobs/overview with JOBS and each job's checkpoints with the status set for it."""
    status: dict[str, int] = {}
    asked: list[str] = []

    class Rest(_Json):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            asked.append(self.path)
            if self.path == "/jobs/overview":
                code, body = 200, {"jobs": JOBS}
            elif self.path == "/overview":
                code, body = 200, {"taskmanagers": 1}
            elif self.path.endswith("/metrics?get=numRestarts"):
                code, body = 200, [{"id": "numRestarts", "value": "2"}]
            else:
                job = self.path.split("/")[2]
                code = status.get(job, 200)
                restored = {"restored": {"id": 3, "external_path": "file:/cp/run0/chk-3"}} if job == "a" else {}
                body = {"latest": {"completed": {"id": 7, "latest_ack_timestamp": 99}, **restored}} if code == 200 \
                    else {"errors": ["refused"]}
            self.reply(code, body)

    with _serving(Rest) as url:
        yield url, status, asked


def test_a_job_without_statistics_yet_lists_without_a_checkpoint(cluster: Cluster) -> None:
    url, status, asked = cluster
    status["a"] = 404  # a job that ended between the overview and this request
    status["b"] = 500  # the dispatcher's answer while the job master initializes
    jobs = {j.id: j for j in FlinkRest(url).jobs()}
    assert [jobs[k].last_checkpoint_id for k in "abc"] == [None, None, None]
    assert "/jobs/c/checkpoints" not in asked  # an initializing job has none to ask for


def test_a_job_with_statistics_carries_its_last_checkpoint(cluster: Cluster) -> None:
    url, _, _ = cluster
    got = {j.id: j for j in FlinkRest(url).jobs()}["a"]
    assert (got.last_checkpoint_id, got.last_checkpoint_ms) == (7, 99)


def test_where_a_job_restored_from_and_no_statistics_is_no_answer(cluster: Cluster) -> None:
    url, status, _ = cluster
    rest = FlinkRest(url)
    assert rest.restored_from("a") == "file:/cp/run0/chk-3"
    assert rest.restored_from("b") is None  # started afresh
    for refusal in (500, 404, 403):  # still initializing, gone meanwhile, refused: none tells what it restored
        status["b"] = refusal
        with pytest.raises(FlinkRequestError):
            rest.restored_from("b")


@pytest.mark.parametrize("code", [400, 403, 503])
def test_any_other_refusal_fails_the_listing(cluster: Cluster, code: int) -> None:
    url, status, _ = cluster
    status["a"] = code
    with pytest.raises(FlinkRequestError) as err:
        FlinkRest(url).jobs()
    assert err.value.status == code


def test_jobs_list_reports_a_refusal_in_one_line(cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    url, status, _ = cluster
    status["a"] = 403
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_FLINK__REST_URL", url)
    result = CliRunner().invoke(app, ["jobs", "list"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.output
    assert "HTTP 403" in lines[0]


_NOT_FLINK = [
    ((200, b"<html>a web page</html>"), (200, b"<html>a web page</html>")),  # another server at the address
    ((200, b"[]"), (200, b"[]")),  # JSON, but not the cluster's
    ((200, b'{"taskmanagers": 1}'), (200, b'{"jobs": [{"id": "a"}]}')),
    ((200, b'{"taskmanagers": 1}'), (200, b'{"jobs": 3}')),
]


@pytest.mark.parametrize(("overview", "jobs_overview", "argv"), [
    (*answers, argv) for answers in _NOT_FLINK
    for argv in (["jobs", "list"], ["jobs", "cancel", "bars"], ["status", "--only", "flink"])
    # status asks /overview only: where that answers as a cluster's, there is nothing for it to refuse
    if argv[0] != "status" or not answers[0][1].startswith(b"{")
])
def test_an_answer_not_flinks_is_one_line_not_a_traceback(
        overview: tuple[int, bytes], jobs_overview: tuple[int, bytes], argv: list[str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    routes = {"/overview": (*overview, "application/json"), "/jobs/overview": (*jobs_overview, "application/json")}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    with scripted_server(routes) as url:
        monkeypatch.setenv("TRADESIM_FLINK__REST_URL", url)
        result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if argv[0] == "jobs":
        assert result.output.startswith("error: "), result.output
        assert "is not Flink's REST API" in result.output, result.output
    else:  # the table's health column wraps the line
        assert "Flink's REST" in result.output, result.output


def test_a_start_time_no_calendar_holds_is_listed_without_one(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    jobs = [{"jid": "a", "name": "tradesim-bars", "state": "CREATED", "start-time": -1, "duration": -1},
            {"jid": "b", "name": "tradesim-execution", "state": "CREATED", "start-time": 10**18}]
    routes = {"/overview": (200, b'{"taskmanagers": 1}', "application/json"),
              "/jobs/overview": (200, json.dumps({"jobs": jobs}).encode(), "application/json")}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    with scripted_server(routes) as url:
        monkeypatch.setenv("TRADESIM_FLINK__REST_URL", url)
        result = CliRunner().invoke(app, ["jobs", "list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    cells = [[c.strip() for c in line.strip("│┃ ").split("│")] for line in result.output.splitlines()]
    rows = {row[0]: row for row in cells if row[0] in ("bars", "execution")}
    assert rows["bars"][3:5] == ["-", "-"]  # started, uptime: none to tell (was 1969)
    assert rows["execution"][3] == "-"  # past any calendar (was a traceback)


@pytest.fixture
def gauges() -> Iterator[None]:
    """The exporter's gauges are the process's: start and leave them empty."""
    reported = (exporter.SOURCE_UP, exporter.JOB_RUNNING, exporter.JOB_RESTARTS, exporter.JOB_CHECKPOINT_AGE)
    for gauge in reported:
        gauge.clear()
    yield
    for gauge in reported:
        gauge.clear()


def test_the_exporter_reports_a_refusal_as_its_flink_source_down(cluster: Cluster, gauges: None,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    url, status, _ = cluster
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_FLINK__REST_URL", url)
    # no broker here: the lag probes are never asked, and must not look for one while the exporter is built
    monkeypatch.setattr(kafka_client, "consumer", lambda *_, **__: _Idle())
    ex = exporter.Exporter(load_settings())
    for other in ("_components", "_lags", "_redis", "_disk"):  # no stack here: only the Flink source is read
        monkeypatch.setattr(ex, other, _reads_nothing(other))
    try:
        ex.run_once()
        assert _value("tradesim_exporter_source_up", source="flink") == 1
        assert _value("tradesim_flink_job_restarts", flink_job="execution") == 2
        status["a"] = 403
        ex.run_once()
    finally:
        ex.close()
    assert _value("tradesim_exporter_source_up", source="flink") == 0
    # no stale gauge may keep an alert quiet: the jobs are no longer reported at all
    assert _value("tradesim_flink_job_running", flink_job="execution") is None
    assert _value("tradesim_flink_job_restarts", flink_job="bars") is None


def test_a_job_not_started_yet_has_no_checkpoint_age(cluster: Cluster, gauges: None,
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A review: Flink's start time -1 (a job not started) read as a checkpoint age of ~56 years, an alert's worth."""
    url, _, _ = cluster
    monkeypatch.setattr(sys.modules[__name__], "JOBS", [{**JOBS[2], "start-time": -1}])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_FLINK__REST_URL", url)
    monkeypatch.setattr(kafka_client, "consumer", lambda *_, **__: _Idle())
    ex = exporter.Exporter(load_settings())
    for other in ("_components", "_lags", "_redis", "_disk"):
        monkeypatch.setattr(ex, other, _reads_nothing(other))
    try:
        ex.run_once()
    finally:
        ex.close()
    assert _value("tradesim_flink_job_running", flink_job="persistence") == 0  # listed: INITIALIZING
    assert _value("tradesim_flink_job_checkpoint_age_seconds", flink_job="persistence") is None


def _reads_nothing(name: str) -> Callable[[], None]:
    """A source that measures nothing, under the name the exporter labels its SOURCE_UP with."""
    def read() -> None:
        pass

    read.__name__ = name
    return read


class _Idle:
    def close(self) -> None:
        pass


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


DECLINED = ("java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint.CheckpointException: "
            "Checkpoint triggering task Source: trade_orders (1/1) of job j is not being executed at the moment. "
            "Aborting checkpoint. Failure reason: Not all required tasks are currently running.")


@pytest.mark.parametrize(("first_cause", "stops"), [(DECLINED, True), ("java.io.IOException: disk full", False)])
def test_a_savepoint_a_starting_job_declines_is_asked_again_and_any_other_failure_is_raised(
        first_cause: str, stops: bool) -> None:
    """CI on a busy box: a savepoint asked right after a job's (re)start failed with "not all required tasks are
    currently running" (the job ran on), failing `jobs cancel --savepoint`, `backup` and `down`'s parking."""
    triggers: list[str] = []

    class Rest(_Json):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            triggers.append(f"t{len(triggers) + 1}")
            self.reply(200, {"request-id": triggers[-1]})

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path.endswith("/t1"):
                self.reply(200, {"status": {"id": "COMPLETED"},
                                 "operation": {"failure-cause": {"stack-trace": first_cause + "\n\tat x.y(Z.java:1)"}}})
            else:
                self.reply(200, {"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-1"}})

    with _serving(Rest) as url:
        rest = FlinkRest(url)
        if stops:
            assert rest.stop_with_savepoint("j", None, timeout_s=10) == "file:/sp/savepoint-1"
            assert triggers == ["t1", "t2"]
        else:
            with pytest.raises(FlinkRequestError, match=r"^savepoint of j failed: java.io.IOException: disk full$"):
                rest.stop_with_savepoint("j", None, timeout_s=10)
            assert triggers == ["t1"]


def test_a_savepoint_that_leaves_the_job_running_asks_flink_not_to_cancel_it() -> None:
    """`savepoint` (what a test that only needs a savepoint takes, rather than stopping and resubmitting the job)
    asks the savepoints endpoint with cancel-job false, and is asked again when a starting job declines it."""
    posted: list[tuple[str, dict[str, object]]] = []

    class Rest(_Json):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            posted.append((self.path, json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))))
            self.reply(200, {"request-id": f"t{len(posted)}"})

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path == "/jobs/j/savepoints/t1":
                declined = {"failure-cause": {"stack-trace": DECLINED}}
                self.reply(200, {"status": {"id": "COMPLETED"}, "operation": declined})
            elif self.path == "/jobs/j/savepoints/t2":
                self.reply(200, {"status": {"id": "COMPLETED"}, "operation": {"location": "file:/sp/savepoint-2"}})
            else:
                self.reply(404, {"errors": [f"no {self.path}"]})

    with _serving(Rest) as url:
        assert FlinkRest(url).savepoint("j", "/sp", timeout_s=10) == "file:/sp/savepoint-2"
    assert posted == [("/jobs/j/savepoints", {"cancel-job": False, "target-directory": "/sp"})] * 2


def test_the_flink_client_runs_in_a_session_of_its_own_and_is_killed_at_its_deadline(tmp_path: Path) -> None:
    """A probe: Ctrl-C at the terminal reached the `flink run` clients a backup was resuming its jobs with, and
    both jobs stayed stopped. The client now has a session of its own (the terminal's signals go to the command,
    whose clean-up waits for it), and is still killed when its deadline passes."""
    import os

    from tradesim.adapters.flink.client import _run_client

    seen = tmp_path / "seen"
    client = tmp_path / "flink"
    client.write_text(f'#!/bin/sh\necho "$$ $(ps -o sid= -p $$)" > {seen}\nsleep "$1"\n'
                      'echo "Job has been submitted with JobID 0123abcd"\n')
    client.chmod(0o755)

    def run(seconds: str, timeout_s: float) -> str:
        return _run_client([str(client)], "job", [seconds], env=dict(os.environ), parallelism=None, options=None,
                           timeout_s=timeout_s)

    assert run("0", 30) == "0123abcd"
    pid, session = (int(x) for x in seen.read_text().split())
    assert session == pid != os.getsid(0)  # the leader of a session of its own
    with pytest.raises(FlinkRequestError, match="no answer after"):
        run("60", 0.5)
    pid = int(seen.read_text().split()[0])
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped, not left running
