"""The session cluster's REST API (stdlib HTTP: a handful of JSON calls) and detached `flink run` submission."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
from tradesim.lifetime import own_session_child
from tradesim.settings import redacted

ACTIVE_STATES = frozenset({"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "CANCELLING",
                           "RECONCILING"})
_NO_CHECKPOINTS_YET = frozenset({"INITIALIZING", "CREATED"})
#: how Flink declines a savepoint of a job whose tasks are not all running yet (the job itself runs on)
NOT_RUNNING_YET = ("Not all required tasks are currently running", "is not being executed at the moment")


@dataclass(frozen=True)
class JobInfo:
    """One job of the cluster as `tradesim jobs list` shows it."""

    id: str
    name: str
    state: str
    start_time_ms: int
    duration_ms: int
    last_checkpoint_ms: int | None = None
    last_checkpoint_id: int | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


class FlinkRest:
    """Talks to one cluster's REST endpoint; no network work until a method is called."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = redacted(self.url)  # for messages
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,  # noqa: S310 - http(s) URL from settings
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                errors = json.loads(detail).get("errors", [])
                detail = errors[0].splitlines()[0] if errors else detail
            except (ValueError, AttributeError):
                pass
            raise FlinkRequestError(f"{method} {path}: HTTP {exc.code}: {detail.strip()[:300]}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FlinkUnavailable(f"no Flink REST API answers at {self.shown_url}: {reason}") from None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:  # another server at the address (a web page, a proxy's notice): not a cluster
            raise self._not_flink(raw.decode("utf-8", "replace")) from None

    def _not_flink(self, what: object) -> FlinkUnavailable:
        return FlinkUnavailable(f"what answers at {self.shown_url} is not Flink's REST API: "
                                f"{' '.join(str(what).split())[:100]!r}")

    def overview(self) -> dict[str, Any]:
        """Cluster overview (taskmanagers, slots, jobs); raises FlinkUnavailable."""
        got = self._call("GET", "/overview")
        if not isinstance(got, dict):
            raise self._not_flink(got)
        return got

    def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
        """All jobs the cluster knows, newest first; active jobs carry their last completed checkpoint.

        A job that has no checkpoint statistics yet is listed without a checkpoint: none is asked for while the job
        is created or initializing, and a 404 or 500 for them (a job that ended meanwhile, or one whose master still
        initializes: Flink's dispatcher answers 500 then) does not make the listing fail; any other refusal does."""
        listed = self._call("GET", "/jobs/overview")
        try:
            infos = [JobInfo(id=str(j["jid"]), name=str(j["name"]), state=str(j["state"]),
                             start_time_ms=int(j["start-time"]), duration_ms=int(j.get("duration") or 0))
                     for j in listed.get("jobs") or []]
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):  # a JSON answer of another shape
            raise self._not_flink(listed) from None
        rows = []
        for info in infos:
            if with_checkpoints and info.active and info.state not in _NO_CHECKPOINTS_YET:
                try:
                    stats = self._call("GET", f"/jobs/{info.id}/checkpoints")
                except FlinkRequestError as exc:
                    if exc.status not in (404, 500):
                        raise
                    stats = {}
                history = stats.get("latest") if isinstance(stats, dict) else None
                latest = history.get("completed") if isinstance(history, dict) else None
                if isinstance(latest, dict):
                    ack, number = latest.get("latest_ack_timestamp"), latest.get("id")
                    info = JobInfo(**{**info.__dict__, "last_checkpoint_ms": ack if isinstance(ack, int) else None,
                                      "last_checkpoint_id": number if isinstance(number, int) else None})
            rows.append(info)
        return sorted(rows, key=lambda r: r.start_time_ms, reverse=True)

    def restored_from(self, job_id: str) -> str | None:
        """Where the job's latest restore read its state (a savepoint's or checkpoint's path), None if it restored
        none. A job without statistics (still initializing, or a busy dispatcher: 404 or 500, as in `jobs`) raises
        FlinkRequestError: that is no telling, not "none"."""
        stats = self._call("GET", f"/jobs/{job_id}/checkpoints")
        restored = (stats.get("latest") or {}).get("restored") or {}
        path = restored.get("external_path")
        return str(path) if path else None

    def trigger_checkpoint(self, job_id: str) -> str | None:
        """Ask for a checkpoint now, beside the periodic ones; returns the request's id for `checkpoint_requested`,
        or None from a cluster that takes no such request (the endpoint came with Flink 1.19)."""
        try:
            answer = self._call("POST", f"/jobs/{job_id}/checkpoints", {})
        except FlinkRequestError as exc:
            if exc.status in (404, 405):
                return None
            raise
        if "request-id" not in answer:
            raise FlinkRequestError(f"POST /jobs/{job_id}/checkpoints: no request id in {str(answer)[:200]}")
        return str(answer["request-id"])

    def checkpoint_requested(self, job_id: str, request_id: str) -> bool | None:
        """A checkpoint asked for with `trigger_checkpoint`: None while it is in progress, True once it completed,
        False when it failed (a job whose tasks are still loading their state declines one)."""
        st = self._call("GET", f"/jobs/{job_id}/checkpoints/{request_id}")
        if st.get("status", {}).get("id") != "COMPLETED":
            return None
        return (st.get("operation") or {}).get("checkpointId") is not None

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    def assigned_splits(self, job_id: str) -> set[str]:
        """The source splits (e.g. `trade_orders-3`, a Kafka partition) the job's readers hold now: each registers
        its `split.<name>.*` metrics once assigned. A savepoint taken before holds no position for the others."""
        splits: set[str] = set()
        for vertex in self.job(job_id).get("vertices", []):
            for metric in self._call("GET", f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"):
                _, found, rest = str(metric.get("id", "")).partition(".split.")
                if found:
                    splits.add(rest.split(".", 1)[0])
        return splits

    def restarts(self, job_id: str) -> int:
        """How often the job failed and restarted since it was submitted (its numRestarts; the REST API caches
        metrics for up to `metrics.fetcher.update-interval`, 10 s)."""
        rows = self._call("GET", f"/jobs/{job_id}/metrics?get=numRestarts")
        return int(rows[0]["value"]) if rows else 0

    def failures(self, job_id: str) -> list[str]:
        """The job's failures (exception history, newest first), each as its exception's text and stack trace."""
        history = self._call("GET", f"/jobs/{job_id}/exceptions").get("exceptionHistory", {})
        return [f"{e.get('exceptionName', '')}: {e.get('stacktrace', '')}" for e in history.get("entries", [])]

    def cancel(self, job_id: str, timeout_s: float = 60) -> None:
        """Make sure the job no longer runs, and wait until it has stopped (so a resubmit right after is not
        mistaken for a duplicate); a job the cluster does not know (e.g. lost in a restart) is done."""
        try:
            self._call("PATCH", f"/jobs/{job_id}?mode=cancel")
        except FlinkRequestError as exc:
            if exc.status != 404:
                raise
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(j.id == job_id and j.active for j in self.jobs(with_checkpoints=False)):
                return
            time.sleep(0.2)
        raise FlinkRequestError(f"job {job_id} still not cancelled after {timeout_s:.0f} s")

    def stop_with_savepoint(self, job_id: str, target_dir: str | None, timeout_s: float = 120) -> str:
        """Take a savepoint and stop the job; returns the savepoint's location. A job whose tasks are still being
        deployed (just submitted, or restarting) declines the savepoint and runs on: asked again for the first
        half of `timeout_s`, so the last request has the other half to finish (a stop still in flight when this
        gives up could stop the job behind its caller's back)."""
        body: dict[str, Any] = {"drain": False}
        if target_dir:
            body["targetDirectory"] = target_dir
        return self._savepoint(job_id, f"/jobs/{job_id}/stop", body, timeout_s)

    def savepoint(self, job_id: str, target_dir: str | None, timeout_s: float = 120) -> str:
        """Take a savepoint and leave the job running; returns the savepoint's location. Declined by a job whose
        tasks are still being deployed, it is asked again as `stop_with_savepoint` asks."""
        body: dict[str, Any] = {"cancel-job": False}
        if target_dir:
            body["target-directory"] = target_dir
        return self._savepoint(job_id, f"/jobs/{job_id}/savepoints", body, timeout_s)

    def _savepoint(self, job_id: str, trigger_path: str, body: dict[str, Any], timeout_s: float) -> str:
        """POST `body` to `trigger_path` (a savepoint's trigger) and wait for the savepoint's location."""
        start = time.monotonic()
        deadline, asking = start + timeout_s, start + timeout_s / 2
        trigger = self._call("POST", trigger_path, body)["request-id"]
        while time.monotonic() < deadline:
            st = self._call("GET", f"/jobs/{job_id}/savepoints/{trigger}")
            if st.get("status", {}).get("id") == "COMPLETED":
                op = st.get("operation", {})
                if "failure-cause" not in op:
                    return str(op.get("location"))
                trace = str(op["failure-cause"].get("stack-trace", ""))
                cause = trace.splitlines()
                if not any(why in trace for why in NOT_RUNNING_YET) or time.monotonic() + 0.5 > asking:
                    raise FlinkRequestError(f"savepoint of {job_id} failed: {cause[0] if cause else op}")
                time.sleep(0.5)
                trigger = self._call("POST", trigger_path, body)["request-id"]
                continue
            time.sleep(0.5)
        raise FlinkRequestError(f"savepoint of {job_id} not complete after {timeout_s:.0f} s")


def rest_address(url: str) -> str:
    """host:port for `flink run -m` from a REST URL."""
    return url.split("://", 1)[-1].rstrip("/")


def submit(flink_bin: Path, rest_url: str, module: str, program_args: list[str], *, python: Path,
           jars: list[Path], env: dict[str, str], parallelism: int | None = None,
           options: dict[str, str] | None = None, timeout_s: float = 300) -> str:
    """Detached `flink run -pym module`; returns the job id. Raises FlinkRequestError with the client's reason."""
    argv = [str(flink_bin), "run", "-d", "-m", rest_address(rest_url)]
    # pipeline.jars ships the jars with the job; the Python client's JVM only sees Java classes (KafkaSource)
    # of a jar given as --jarfile (still parsed by 2.2's CLI, though no longer in its help): both are needed.
    if jars:
        argv += ["--jarfile", str(jars[0]), "-Dpipeline.jars=" + ";".join(f"file://{j}" for j in jars)]
    argv += ["-pym", module, "-pyexec", str(python), "-pyclientexec", str(python)]
    return _run_client(argv, module, program_args, env=env, parallelism=parallelism, options=options,
                       timeout_s=timeout_s)


def submit_jar(flink_bin: Path, rest_url: str, jar: Path, main_class: str | None, program_args: list[str], *,
               env: dict[str, str], parallelism: int | None = None, options: dict[str, str] | None = None,
               timeout_s: float = 300) -> str:
    """Detached `flink run -c main_class jar` (the jar holds everything the job needs; None: its manifest's
    Main-Class); returns the job id."""
    argv = [str(flink_bin), "run", "-d", "-m", rest_address(rest_url), *(["-c", main_class] if main_class else [])]
    return _run_client(argv, main_class or jar.name, program_args, env=env, parallelism=parallelism,
                       options=options, timeout_s=timeout_s, jar=jar)


def _run_client(argv: list[str], what: str, program_args: list[str], *, env: dict[str, str],
                parallelism: int | None, options: dict[str, str] | None, timeout_s: float,
                jar: Path | None = None) -> str:
    argv = argv + [f"-D{k}={v}" for k, v in (options or {}).items()]
    if parallelism:
        argv += ["-p", str(parallelism)]
    argv += [*([str(jar)] if jar else []), *program_args]
    # in a session of its own: a Ctrl-C at the terminal goes to the command, whose clean-up (a backup resuming the
    # jobs it stopped) needs this client to finish; `own_session_child` kills it when its caller stops waiting
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc, own_session_child(proc):
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise FlinkRequestError(f"flink run {what}: no answer after {timeout_s:.0f} s") from None
    output = stdout + stderr
    for line in output.splitlines():
        if "Job has been submitted with JobID" in line:
            return line.rsplit(" ", 1)[-1].strip()
    # the most telling line: the Python exception of the client program, else the first Java cause
    python_errors = [ln.strip() for ln in output.splitlines() if re.match(r"^[A-Za-z_.]+(Error|Exception): ", ln)]
    lines = output.splitlines()
    java_causes = [ln.strip() for ln in lines if ln.startswith("Caused by")]
    # a jar's main that throws: the CLI prints the exception's message after this header
    header = "The program finished with the following exception:"
    thrown = [ln.strip() for ln in lines[lines.index(header) + 1:] if ln.strip()][:1] if header in lines else []
    cause = (python_errors or java_causes or thrown or ["no job id in the client output"])[-1]
    tail = "\n".join(output.strip().splitlines()[-15:])
    raise FlinkRequestError(f"flink run {what} failed (exit {proc.returncode}): {cause}\n{tail}")
