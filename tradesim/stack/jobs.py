"""The Flink jobs tradesim runs on the session cluster: the catalog (name → module and arguments) and their
submission. Used by `tradesim jobs`, `tradesim up --with-jobs`, the benchmarks and the tests; no PyFlink import
here (the job modules are submitted, not imported)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tradesim.files import replace_text
from tradesim.settings import Settings
from tradesim.stack.errors import StackError, UserError
from tradesim.stack.state import claim_stack_dir, file_lock

if TYPE_CHECKING:
    from tradesim.adapters.flink.client import FlinkRest, JobInfo
    from tradesim.domain.events import OrderPlaced
    from tradesim.stack.flink import Flink

JOB_NAME_PREFIX = "tradesim-"


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    description: str
    #: submitted by `tradesim up --with-jobs`
    standard: bool
    #: the job's JVM implementation (in the jar `Flink.jobs_jar`), which the local cluster and Managed Flink run;
    #: `module` is then the same rule in Python, which `tradesim bench bars` measures against it
    main_class: str | None = None
    #: its state holds resting orders: a run under its own name started without state cancels the orders an
    #: earlier run's books held (`cancel_lost_orders`)
    holds_orders: bool = False

    @property
    def flink_name(self) -> str:
        """The job name on the cluster; `jobs list` maps it back to `name`."""
        return JOB_NAME_PREFIX + self.name


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec("bars", "tradesim.jobs.bars", "1 s and 1 min OHLCV bars: market_data → market_bars", True,
                "dev.tradesim.jobs.Bars"),
        JobSpec("execution", "tradesim.jobs.execution",
                "match orders against prices, settle on portfolios: trade_orders + market_data → trade_executed",
                True, holds_orders=True),
        JobSpec("passthrough", "tradesim.jobs.passthrough",
                "benchmark baseline: copy market_data to market_data_copy in Flink SQL", False),
    )
}


#: a job's Kafka sources: (topic argument, group suffix, where a new group starts, start-offsets argument)
SOURCES: dict[str, list[tuple[str, str, Literal["earliest", "latest"], str]]] = {
    "bars": [("source-topic", "", "earliest", "source-start")],
    "execution": [("orders-topic", "", "earliest", "orders-start"),
                  ("market-topic", "-prices", "latest", "market-start")],
}


def source_groups(settings: Settings, jobs: Collection[str] | None = None) -> list[tuple[str, str]]:
    """(consumer group, topic) of every Kafka source of the standard jobs (or of `jobs` only), as submitted by
    default."""
    out = []
    for name, sources in SOURCES.items():
        if jobs is not None and name not in jobs:
            continue
        args = _arg_map(JOBS[name], settings)
        out += [(args["group-id"] + suffix, args[topic_arg]) for topic_arg, suffix, _, _ in sources]
    return out


def job_args(spec: JobSpec, settings: Settings, overrides: dict[str, str] | None = None) -> list[str]:
    """Program arguments of a job, from settings (every endpoint and topic is a setting)."""
    return _argv(_arg_map(spec, settings, overrides))


def _argv(args: dict[str, str]) -> list[str]:
    return [part for k, v in args.items() for part in (f"--{k}", v)]


def _with_start_offsets(spec: JobSpec, settings: Settings, args: dict[str, str]) -> dict[str, str]:
    """The arguments plus each source's start offsets, resolved now from its group (see
    tradesim.adapters.kafka.client.start_positions); a restore from a savepoint or checkpoint overrides them."""
    from tradesim.adapters.kafka.client import start_positions
    from tradesim.adapters.kafka.errors import KafkaUnavailable

    out = dict(args)
    for topic_arg, suffix, reset, start_arg in SOURCES.get(spec.name, []):
        if start_arg in args:
            continue
        try:
            got = start_positions(settings.kafka, args["group-id"] + suffix, args[topic_arg], reset)
        except KafkaUnavailable as exc:
            raise StackError(f"cannot submit {spec.name}: {exc}") from None
        if got:
            out[start_arg] = ",".join(f"{p}:{o}" for p, o in sorted(got.items()))
    return out


def _arg_map(spec: JobSpec, settings: Settings, overrides: dict[str, str] | None = None) -> dict[str, str]:
    t, f = settings.topics, settings.flink
    args: dict[str, str] = {"bootstrap": settings.kafka.bootstrap, "job-name": spec.flink_name,
                            "kafka-security-protocol": settings.kafka.security_protocol,
                            "checkpoint-interval-ms": str(f.checkpoint_interval_ms)}
    if spec.name == "bars":
        args |= {"source-topic": t.market_data, "bars-topic": t.market_bars, "dead-letter-topic": t.dead_letter,
                 "group-id": "tradesim-bars", "out-of-orderness-ms": str(f.out_of_orderness_ms)}
    elif spec.name == "execution":
        args |= {"orders-topic": t.trade_orders, "market-topic": t.market_data, "executed-topic": t.trade_executed,
                 "dead-letter-topic": t.dead_letter, "group-id": "tradesim-execution",
                 "processing-deadline-s": str(settings.trading.processing_deadline_s),
                 "python-execution-mode": f.execution_mode}
    elif spec.name == "passthrough":
        args |= {"source-topic": t.market_data, "sink-topic": t.market_data + "_copy",
                 "group-id": "tradesim-passthrough"}
    args |= overrides or {}
    return args


def name_of(flink_job_name: str) -> str:
    """Catalog name of a cluster job ('tradesim-bars' → 'bars'); foreign jobs keep their own name."""
    return flink_job_name.removeprefix(JOB_NAME_PREFIX)


def cluster(settings: Settings) -> FlinkRest:
    """A REST client of a cluster that answers; StackError (exit 1) when none is up."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.stack.flink import Flink

    rest = Flink(settings).rest()
    try:
        rest.overview()
    except (FlinkUnavailable, FlinkRequestError) as exc:
        raise StackError(f"no Flink cluster is up ({exc}); start it with `tradesim up --only kafka,flink`") from None
    return rest


def running(rest: FlinkRest, flink_name: str) -> list[JobInfo]:
    return [j for j in rest.jobs(with_checkpoints=False) if j.name == flink_name and j.active]


def doubled(active: list[JobInfo]) -> dict[str, list[str]]:
    """Catalog name → ids, for each standard job active more than once (each order would be decided twice: the
    ledger's conditional write keeps the balances right, but every outcome goes out twice)."""
    ids: dict[str, list[str]] = {}
    for job in active:
        name = name_of(job.name)
        if job.active and name in JOBS and JOBS[name].standard:
            ids.setdefault(name, []).append(job.id)
    return {name: found for name, found in ids.items() if len(found) > 1}


def active_catalog_jobs(rest: FlinkRest) -> dict[str, str]:
    """Catalog name → id of every catalog job active on the cluster."""
    return {name_of(j.name): j.id for j in rest.jobs(with_checkpoints=False) if j.active and name_of(j.name) in JOBS}


def running_names(settings: Settings) -> set[str] | None:
    """Catalog names of the jobs active on the cluster; None when no cluster answers, which `source_groups` reads
    as "all jobs" (a caller waiting on their groups then waits on every group rather than none)."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.stack.flink import Flink

    try:
        return set(active_catalog_jobs(Flink(settings).rest()))
    except (FlinkUnavailable, FlinkRequestError):
        return None


def _check_slots(rest: FlinkRest, parallelism: int, progress: Callable[[str], None]) -> None:
    """UserError for a parallelism the cluster's task slots cannot hold (a probe's `-p 100000` failed with a page
    of Java); a warning when fewer are free now (a probe's `-p 3` with two free restarted until slots came free;
    right after a cancel, slots come free a moment later)."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable

    try:
        overview = rest.overview()
    except (FlinkUnavailable, FlinkRequestError):
        return  # the submit says what is wrong with the cluster
    free, total = overview.get("slots-available"), overview.get("slots-total")
    if isinstance(total, int) and parallelism > total:
        raise UserError(f"--parallelism {parallelism} needs as many task slots; the cluster has {total} "
                        "(flink.task_slots)")
    if isinstance(free, int) and parallelism > free:
        progress(f"only {free} of the cluster's task slots are free: the job restarts until {parallelism} are")


def job_spec(name: str) -> JobSpec:
    """The catalog's job of this name; raises UserError naming the known ones."""
    spec = JOBS.get(name)
    if spec is None:
        raise UserError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    return spec


def submit_job(settings: Settings, name: str, parallelism: int | None = None,
               overrides: dict[str, str] | None = None, options: dict[str, str] | None = None,
               progress: Callable[[str], None] = lambda _msg: None,
               runtime: Literal["jvm", "python"] = "jvm", fresh: bool = False,
               provisioned: bool = False) -> tuple[str, bool]:
    """Submit a catalog job unless it already runs; returns (job id, newly submitted). `options`: Flink
    configuration for this job, e.g. `execution.state-recovery.path` to restore a savepoint. `runtime`: a job
    with a JVM implementation runs it unless "python" is asked (`tradesim bench bars` compares the two).
    `provisioned`: the caller provisioned Flink already (jobs submitted side by side would otherwise take
    turns on its lock and report waiting for one another).

    A standard submit (no overrides, no recovery path, not `fresh`) continues the job's state: the savepoint
    `down` or `jobs cancel --savepoint` parked, else the last checkpoint of a run the cluster lost
    (`lost_checkpoint`). One submit of a job at a time across processes (`up --with-jobs`, the watchdog, the
    CLI), so two never resume the same state."""
    spec = job_spec(name)
    rest = cluster(settings)
    claim_stack_dir(settings.stack_dir)
    with file_lock(_flink_dir(settings) / f"submit-{name}.lock"):
        return _submit_locked(settings, spec, rest, parallelism, overrides, options, progress, runtime, fresh,
                              provisioned)


def _submit_locked(settings: Settings, spec: JobSpec, rest: FlinkRest, parallelism: int | None,
                   overrides: dict[str, str] | None, options: dict[str, str] | None,
                   progress: Callable[[str], None], runtime: Literal["jvm", "python"],
                   fresh: bool, provisioned: bool) -> tuple[str, bool]:
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.stack.flink import Flink

    name = spec.name
    job_name = (overrides or {}).get("job-name", spec.flink_name)
    # a standard job under its own name: its runs are the ones noted (of the instance that runs it now)
    ours = spec.standard and job_name == spec.flink_name
    instance = _cluster_instance(settings)
    already = running(rest, job_name)
    if already:
        if ours and not overrides:
            if name not in runs(settings):  # e.g. started before runs were noted
                _note_run(settings, name, RunNote(already[0].id, instance))
            stale = _unpark_if(settings, name, parked(settings).get(name))
            if stale is not None:  # kept, it would roll a later resume of the running job back to it
                progress(f"{name} runs already (job {already[0].id}): the state parked at {stale} is not its state "
                         "any more, and is forgotten")
        return already[0].id, False
    if parallelism is not None:
        _check_slots(rest, parallelism, progress)
    flink = Flink(settings)
    if not provisioned:
        flink.provision_locked(progress)  # no-op when the venv and jars exist
    standard = spec.standard and not (fresh or overrides or (options and RECOVERY in options))
    noted = parked(settings).get(name)
    resumed = noted if standard else None
    what = f"the state parked at {resumed}"
    if resumed is not None and not (local_state(resumed) / "_metadata").is_file():
        progress(f"{name}: {what} is gone; it starts from its group's offsets")
        resumed = None
    try:
        lost = lost_checkpoint(settings, rest, name) if standard and resumed is None else None
    except (FlinkUnavailable, FlinkRequestError) as exc:  # never start afresh for want of an answer
        raise StackError(f"cannot tell whether {name}'s last run was lost with the cluster ({exc}); "
                         "try again") from None
    if lost is not None:
        resumed, what = lost[1], f"{lost[1]}, the last state of its run {lost[0]}, which the cluster lost"
    if resumed is not None:
        progress(f"{name} resumes from {what}")
        options = {**(options or {}), RECOVERY: resumed}
    args = _with_start_offsets(spec, settings, _arg_map(spec, _kafka_route(settings, progress), overrides))
    parallelism = parallelism or settings.flink.parallelism
    recovery = (options or {}).get(RECOVERY)
    # other processes' prunes keep its folder until the job reports the restore or the run is noted; an entry of
    # this name found here is a crashed submit's (this name's submits hold its lock)
    with _restoring_notes(settings).changing() as entries:
        if recovery:
            entries[name] = recovery
        else:
            entries.pop(name, None)
    # read before the start: every order a book shows then is an earlier run's (the new run's come after)
    left_in_books = orders_in_books(settings) if ours and spec.holds_orders and not recovery else None
    try:
        job_id = _start(settings, spec, flink, args, parallelism, options, runtime)
        if ours:
            # noted at once, with the state it resumed: lost before its first checkpoint, the run resumes that again
            before = runs(settings).get(name)
            _note_run(settings, name, None if overrides else RunNote(job_id, instance, recovery))
            # a new run has its own state from now on: a parked one is stale, and kept while the run waits for its
            # first checkpoint it would roll a later resume back (a run lost before that resumes `recovery`, noted
            # above); a note parked meanwhile by someone else is theirs
            dropped = _unpark_if(settings, name, noted)
            try:
                confirmed = resumed is not None and _await_resumed(rest, name, job_id, what, progress)
            except StackError:
                _note_run(settings, name, before)  # the resume failed: the state it came from is still to be resumed
                if dropped is not None:
                    with _parked_notes(settings).changing() as entries:
                        entries.setdefault(name, dropped)
                raise
            if lost is not None and confirmed:  # checkpointed on its own: the lost run's checkpoints are superseded
                shutil.rmtree(_checkpoints_of(settings, lost[0]), ignore_errors=True)
            if left_in_books is not None:
                _cancel_lost_orders(settings, name, left_in_books, progress)
        try:
            prune_checkpoints(settings, rest, restoring=recovery, submitted=job_id)
        except Exception as exc:  # noqa: BLE001 - housekeeping: the job is submitted whatever happens here
            progress(f"old checkpoints not pruned: {type(exc).__name__}: {exc}")
    finally:
        # never in place of the submit's own error: an entry left keeps a folder, and the next submit clears it
        if recovery:
            with contextlib.suppress(OSError), _restoring_notes(settings).changing() as entries:
                entries.pop(name, None)
    return job_id, True


def orders_in_books(settings: Settings) -> list[OrderPlaced] | StackError:
    """Every order `Orders` shows in a book, or why they could not be read (returned, not raised: a start goes on
    without them)."""
    from tradesim.adapters.dynamodb.client import DynamoDB
    from tradesim.adapters.dynamodb.errors import DynamoDBError
    from tradesim.adapters.dynamodb.orders import OrderStore
    from tradesim.ports import Unavailable

    db = DynamoDB(settings.dynamodb)
    try:
        return OrderStore(db).held_in_books()
    except (Unavailable, DynamoDBError) as exc:
        return StackError(str(exc))
    finally:
        db.close()


def _cancel_lost_orders(settings: Settings, name: str, orders: list[OrderPlaced] | StackError,
                        progress: Callable[[str], None]) -> None:
    """After a run of the execution job started without state: cancel the orders an earlier run's books held
    (read before the start; `cancel_lost_orders`), or say why they still show open."""
    if not orders:
        return
    try:
        if isinstance(orders, StackError):
            raise orders
        cancel_lost_orders(settings, orders)
    except StackError as exc:
        progress(f"{name} started without state, and the orders an earlier run held in its books could not be "
                 f"cancelled ({exc}): `tradesim jobs cancel-lost` sends their cancels again")
        return
    what = "1 order an earlier run held in its books is" if len(orders) == 1 else \
        f"{len(orders)} orders an earlier run held in its books are"
    progress(f"{name} started without state: {what} cancelled, unless this run read them again")


def cancel_lost_orders(settings: Settings, orders: list[OrderPlaced]) -> None:
    """Once a run of the execution job started without state: each of these orders, which an earlier run's books
    held, gets a cancel carrying it (`OrderCancelRequested.lost_order`), confirmed by Kafka. The new run ignores it
    for an order it holds (one it read again from its group's offsets) and cancels the others, which no record
    brings back (before, they showed open for ever). Raises StackError when Kafka does not confirm them."""
    from tradesim.adapters.kafka.client import produce_confirmed
    from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaUnavailable
    from tradesim.domain.events import OrderCancelRequested, encode

    now = int(time.time() * 1000)
    cancels = [OrderCancelRequested(order_id=o.order_id, user_id=o.user_id, symbol=o.symbol, requested_at_ms=now,
                                    lost_order=o) for o in orders]
    try:
        produce_confirmed(settings.kafka, settings.topics.trade_orders, [(c.key, encode(c)) for c in cancels])
    except (KafkaDeliveryError, KafkaUnavailable) as exc:
        raise StackError(str(exc)) from None


def _start(settings: Settings, spec: JobSpec, flink: Flink, args: dict[str, str], parallelism: int,
           options: dict[str, str] | None, runtime: Literal["jvm", "python"]) -> str:
    """Run the job's client (`flink run`); returns the new job's id."""
    from tradesim.adapters.flink.client import submit, submit_jar
    from tradesim.adapters.flink.errors import FlinkRequestError

    try:
        if spec.main_class and runtime == "jvm":
            # the Python stages read faults.poison from the TaskManager's settings; the JVM job is told
            poison = next((symbol for stage, symbol in settings.faults.poison.items() if stage == spec.name), None)
            if poison:
                args["poison-symbol"] = poison
            return submit_jar(flink.flink_bin, settings.flink.client_rest_url, flink.jobs_jar, spec.main_class,
                              _argv(args), env=flink.client_env(), parallelism=parallelism, options=options)
        opts = {"python.execution-mode": settings.flink.execution_mode, **(options or {})}
        return submit(flink.flink_bin, settings.flink.client_rest_url, spec.module, _argv(args),
                      # the jobs jar: the connector, and the sources' value reader (NullableText)
                      python=flink.python, jars=[flink.jobs_jar], env=flink.client_env(),
                      parallelism=parallelism, options=opts)
    except FlinkRequestError as exc:
        raise StackError(str(exc)) from None


def _flink_dir(settings: Settings) -> Path:
    return settings.stack_dir / "flink"


class _Notes:
    """A small JSON object in a file that several processes change (the CLI, `up`, the watchdog, the tests): each
    change is a read-modify-write under a lock they all take, written to a file of its own and renamed."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.stack_dir = settings.stack_dir
        self.path = path

    def read(self) -> dict[str, Any]:
        try:
            found = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def intact(self) -> bool:
        """No file yet, or one that holds a JSON object (`read` takes anything else for an empty one)."""
        try:
            return isinstance(json.loads(self.path.read_text()), dict)
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False

    @contextlib.contextmanager
    def changing(self) -> Iterator[dict[str, Any]]:
        claim_stack_dir(self.stack_dir)
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            entries = self.read()
            before = dict(entries)
            yield entries
            if entries != before:
                replace_text(self.path, json.dumps(entries, indent=1) + "\n")


# ---- parking: a job's state across `down` and `up` ------------------------------------------------------------

#: the Flink option that restores a job from a savepoint or checkpoint
RECOVERY = "execution.state-recovery.path"


def local_state(location: str) -> Path:
    """A savepoint's or checkpoint's folder from the location Flink gives (`file:/…`) or takes (a plain path)."""
    return Path(location.removeprefix("file:"))


PARK_TIMEOUT_S = 90.0


def _park_dir(settings: Settings) -> Path:
    return _flink_dir(settings) / "parked"


def _parked_notes(settings: Settings) -> _Notes:
    return _Notes(settings, _park_dir(settings) / "parked.json")


def parked(settings: Settings) -> dict[str, str]:
    """Catalog job name → the savepoint `down` stopped it with, which its next standard submit resumes from."""
    return {str(k): str(v) for k, v in _parked_notes(settings).read().items()}


def unpark(settings: Settings, name: str) -> None:
    """Forget a job's parked state (it was resumed, or the user starts it afresh with `jobs submit --fresh`)."""
    with _parked_notes(settings).changing() as entries:
        entries.pop(name, None)


def _unpark_if(settings: Settings, name: str, location: str | None) -> str | None:
    """Forget the job's parked state if it is still `location` (read earlier); returns it when forgotten."""
    if location is None:
        return None
    with _parked_notes(settings).changing() as entries:
        if entries.get(name) != location:
            return None
        entries.pop(name)
    return location


def forget_state(settings: Settings, name: str) -> None:
    """`jobs submit --fresh`, even with no cluster to submit to: neither the parked state nor a lost run's is
    resumed later."""
    job_spec(name)
    unpark(settings, name)
    _note_run(settings, name, None)


def park_jobs(settings: Settings, progress: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Stop every running standard job with a savepoint and note it, so that its next standard submit (`up
    --with-jobs`, `jobs submit NAME`) resumes the books, the orders waiting for their market time and the
    unwritten mirror batches instead of starting from the groups' offsets, which would cancel every resting order.
    For `down`, before Flink stops; a job that cannot be stopped this way is left to the stop (its run, still
    noted, is then resumed as a lost one). Returns the names parked."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.stack.flink import Flink

    rest = Flink(settings).rest()
    try:
        active = {name_of(j.name): j.id for j in rest.jobs(with_checkpoints=False)
                  if j.state == "RUNNING" and name_of(j.name) in JOBS and JOBS[name_of(j.name)].standard}
    except (FlinkUnavailable, FlinkRequestError):
        return []

    def one(name: str, job_id: str) -> str | None:
        target = _park_dir(settings) / name
        try:
            location = rest.stop_with_savepoint(job_id, str(target.resolve()), timeout_s=PARK_TIMEOUT_S)
        except (FlinkUnavailable, FlinkRequestError) as exc:
            progress(f"{name} not parked ({exc}): its next submit resumes its last checkpoint, if it has one")
            return None
        return location

    with ThreadPoolExecutor(max(1, len(active))) as pool:
        done = {name: pool.submit(one, name, job_id) for name, job_id in active.items()}
    names = []
    for name, future in done.items():
        location = future.result()
        if location is None:
            continue
        note_parked(settings, name, location)
        names.append(name)
        progress(f"{name} parked at {location}")
    return names


def note_parked(settings: Settings, name: str, location: str) -> None:
    """The job's state is the savepoint at `location` (in its park folder, or a backup's): its next standard
    submit resumes it; a submit that resumes it (or starts it afresh) drops the note."""
    with _parked_notes(settings).changing() as entries:
        entries[name] = location
    _note_run(settings, name, None)  # ended on purpose, its state parked: not a run to take back after a crash
    kept = local_state(location).resolve()
    for older in (_park_dir(settings) / name).glob("savepoint-*"):  # one per job: the others were resumed from
        if older.resolve() != kept:
            shutil.rmtree(older, ignore_errors=True)


def _await_resumed(rest: FlinkRest, name: str, job_id: str, what: str, progress: Callable[[str], None],
                   timeout_s: float = 120.0, unreachable_s: float = 30.0) -> bool:
    """Wait until a job restored from earlier state (`what`) has completed a checkpoint without a failure
    (RUNNING alone comes before the tasks load their state); True then. A job that failed (state that no longer
    fits its operators, or pickled objects its code cannot read) is cancelled, and StackError says why and how
    to start it afresh (a pickle only once a record reaches its key: docs/design/flink-jobs.md). False, with a
    line, when it is not confirmed by the deadline (a slow box: left running), ended meanwhile (cancelled), or the
    cluster stopped answering (gone: its run stays noted with that state)."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable

    deadline = time.monotonic() + timeout_s
    answered = time.monotonic()
    asked: str | None = None
    while time.monotonic() < deadline:
        job, failures = None, []
        try:
            job = next((j for j in rest.jobs() if j.id == job_id), None)
            answered = time.monotonic()
            if job is not None and job.state != "CREATED":
                failures = rest.failures(job_id)
            if job is not None and job.state == "RUNNING" and job.last_checkpoint_id is None and not failures:
                asked, checkpointed = ask_checkpoint(rest, job_id, asked)
                if checkpointed:
                    return True
        except FlinkUnavailable:
            if time.monotonic() - answered > unreachable_s:
                progress(f"{name}: the cluster stopped answering while the job resumed")
                return False
        except FlinkRequestError:  # an answer (e.g. no statistics while the job master initializes): ask again
            answered = time.monotonic()
        if failures or (job is not None and job.state == "FAILED"):
            cause = (failures[0] if failures else "FAILED").strip().splitlines()[0]
            with contextlib.suppress(FlinkUnavailable, FlinkRequestError):
                rest.cancel(job_id)
            raise StackError(f"job {name} could not resume from {what} ({cause}); "
                             f"`tradesim jobs submit {name} --fresh` starts it without that state"
                             + (" (its resting orders are then cancelled)" if JOBS[name].holds_orders else ""))
        if job is not None and job.state in ("CANCELED", "CANCELLING", "FINISHED"):
            progress(f"{name} ended ({job.state}) before it completed a checkpoint")
            return False
        if job is not None and job.state == "RUNNING" and job.last_checkpoint_id is not None:
            return True
        time.sleep(0.5)
    progress(f"{name} resumed but has not completed a checkpoint in {timeout_s:.0f} s; `tradesim jobs list`")
    return False


#: what `ask_checkpoint` follows once the cluster has shown that it takes no checkpoint requests
NO_REQUESTS = ""


def ask_checkpoint(rest: FlinkRest, job_id: str, asked: str | None) -> tuple[str | None, bool]:
    """Ask the resumed job for a checkpoint rather than wait up to an interval for its first periodic one (and
    for the REST API's statistics, cached for seconds, to show it). Returns the request to follow (None: ask at
    the next poll, as after a request that failed or an error; NO_REQUESTS: the cluster takes none, and the
    periodic checkpoint confirms the resume) and whether it completed. Raises FlinkUnavailable."""
    from tradesim.adapters.flink.errors import FlinkRequestError

    if asked == NO_REQUESTS:
        return asked, False
    try:
        if asked is not None:
            done = rest.checkpoint_requested(job_id, asked)
            if done is not False:
                return asked, bool(done)
        # asked again each poll until one is taken: a task still loading its state declines it (the REST API's
        # view of the tasks lags by seconds, so it cannot tell when to ask)
        return rest.trigger_checkpoint(job_id) or NO_REQUESTS, False
    except FlinkRequestError:
        return None, False


# ---- a run the cluster lost: its last retained checkpoint ------------------------------------------------------


@dataclass(frozen=True)
class RunNote:
    """A standard job's latest run: its Flink job id, the cluster instance it was submitted to (the flink
    component's process; None for a cluster tradesim did not start) and the state it resumed, if any."""

    run: str
    cluster: str | None = None
    resumed: str | None = None


def _run_notes(settings: Settings) -> _Notes:
    return _Notes(settings, _flink_dir(settings) / "runs.json")


def runs(settings: Settings) -> dict[str, RunNote]:
    """Catalog job name → its latest standard run (the run whose state its next standard submit continues)."""
    out = {}
    for name, raw in _run_notes(settings).read().items():
        with contextlib.suppress(TypeError):
            note = RunNote(**raw)
            if isinstance(note.run, str) and all(isinstance(v, str | None) for v in (note.cluster, note.resumed)):
                out[str(name)] = note  # else a hand edit: as no note (a `resumed` of 5 was a traceback after `up`)
    return out


def _note_run(settings: Settings, name: str, note: RunNote | None) -> None:
    with _run_notes(settings).changing() as entries:
        if note is None:
            entries.pop(name, None)
        else:
            entries[name] = asdict(note)


def cancel_job(settings: Settings, job_id: str, *, savepoint: bool = False, park_as: str | None = None) -> str | None:
    """Cancel a job on purpose (with `savepoint`: stop it with one, returned). With `park_as`, a standard job's
    name, the savepoint is parked as `down` parks it, so the job's next standard submit resumes it (its books and
    resting orders); without, the run's state is not resumed by a later submit (its checkpoints stay on disk for
    `jobs submit --from-savepoint` while it is among the `flink.ended_runs_kept` newest ended runs, see
    `prune_checkpoints`). Cancelled by other means (Flink's own UI), a run the cluster later loses is resumed."""
    from tradesim.stack.flink import Flink

    flink = Flink(settings)
    rest = flink.rest()
    # parked in this machine's stack folder, as `down` parks: an external cluster keeps its own savepoints
    parking = (savepoint and park_as is not None and park_as in JOBS and JOBS[park_as].standard
               and not flink.external)
    target = str((_park_dir(settings) / park_as).resolve()) if parking and park_as else None
    location = rest.stop_with_savepoint(job_id, target) if savepoint else None
    if not savepoint:
        rest.cancel(job_id)
    with _run_notes(settings).changing() as entries:
        for name in [n for n, raw in entries.items() if isinstance(raw, dict) and raw.get("run") == job_id]:
            del entries[name]
    if parking and park_as and location:
        note_parked(settings, park_as, location)
    return location


def _cluster_instance(settings: Settings) -> str | None:
    """The flink component's process as the state file records it (pid and start time): a new one is a new
    JobManager, which knows none of the old one's jobs. None when tradesim did not start the cluster."""
    from tradesim.stack.state import StateFile

    record = StateFile(settings.stack_dir).load().components.get("flink")
    return None if record is None else f"{record.pid}:{record.start_ticks}"


def _checkpoints_root(settings: Settings) -> Path:
    from tradesim.stack.flink import Flink

    return Flink(settings).dir / "checkpoints"


def _checkpoints_of(settings: Settings, job_id: str) -> Path:
    return _checkpoints_root(settings) / job_id


def prune_checkpoints(settings: Settings, rest: FlinkRest, restoring: str | None = None,
                      submitted: str | None = None) -> list[str]:
    """Bound the retained checkpoints, which Flink keeps for every run that ended (RETAIN_ON_CANCELLATION): keep
    the folders of the runs the cluster has not ended and the ones those restored from, of every noted run (a lost
    one resumes from its folder) and the ones noted runs resumed from, the ones submits in flight restore from
    (`restoring`, this submit's recovery path, and every other process's, see `_restoring`), and the
    `flink.ended_runs_kept` newest others. Returns the runs removed.

    Whenever it cannot tell what a run still needs, it removes nothing: no answer from Flink, a notes file (runs,
    restores in flight) that does not parse, or a job other than `submitted` (whose source is `restoring`) not yet
    RUNNING, since a job starting or restarting reports its restore only once it has read it. The folders are
    listed before the jobs: a folder exists only once its job does, so a run submitted meanwhile is listed as not
    ended."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable

    root = _checkpoints_root(settings).resolve()
    notes = _run_notes(settings)
    if not (notes.intact() and _restoring_notes(settings).intact()):
        return []
    try:
        folders = [d for d in root.iterdir() if d.is_dir()]
        active = [j for j in rest.jobs(with_checkpoints=False) if j.active]
        if any(j.state != "RUNNING" for j in active if j.id != submitted):
            return []
        sources = [restoring, *_restoring(settings).values(),
                   *(rest.restored_from(j.id) for j in active if j.id != submitted)]
    except (OSError, FlinkUnavailable, FlinkRequestError):
        return []  # no folder yet, or no telling which runs still need theirs: keep everything
    noted = [raw for raw in notes.read().values() if isinstance(raw, dict)]
    keep = {*(j.id for j in active), *(str(raw.get("run")) for raw in noted)}
    for source in [*sources, *(raw.get("resumed") for raw in noted)]:
        path = local_state(str(source)).resolve() if source else None
        if path is not None and path.is_relative_to(root) and path != root:  # <root>/<run>[/chk-N[/_metadata]]
            keep.add(path.relative_to(root).parts[0])
    ended = sorted((d for d in folders if d.name not in keep), key=_last_change, reverse=True)
    gone = ended[settings.flink.ended_runs_kept:]
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    return [folder.name for folder in gone if not folder.exists()]


def _restoring(settings: Settings) -> dict[str, str]:
    """Job name → the state a submit in flight restores from, written before `flink run` and removed after the
    submit (by then the run is noted with it, or its job reports the restore): between the two, the job may not be
    listed yet, and another process's prune must not take its folder. A submit that crashed leaves its entry; that
    folder is then kept until the job's next submit."""
    return {str(k): str(v) for k, v in _restoring_notes(settings).read().items() if v}


def _restoring_notes(settings: Settings) -> _Notes:
    return _Notes(settings, _flink_dir(settings) / "restoring.json")


def _last_change(folder: Path) -> float:
    """When a run's folder last changed: a checkpoint added or dropped changes the folder's own time."""
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


def _is_lost(note: RunNote, known: set[str], instance: str | None) -> bool:
    """The cluster lost the run: a new instance runs now (its JobManager stopped or died since: a crash, a kill,
    a `down` that could not park it). On the same instance a run it no longer lists (a finished job expires from
    its listing after an hour) ended there and is not taken back; with no instance to compare (a cluster of its
    own), unlisted counts as lost."""
    if note.run in known:
        return False
    if note.cluster is not None and instance is not None:
        return note.cluster != instance
    return True


def _lost_runs(settings: Settings, rest: FlinkRest) -> dict[str, RunNote]:
    """Catalog name → noted run, for the runs the cluster lost. Raises FlinkUnavailable/FlinkRequestError."""
    known = {j.id for j in rest.jobs(with_checkpoints=False)}
    instance = _cluster_instance(settings)
    return {name: note for name, note in runs(settings).items()
            if name in JOBS and JOBS[name].standard and _is_lost(note, known, instance)}


def lost_checkpoint(settings: Settings, rest: FlinkRest, name: str) -> tuple[str, str] | None:
    """(run id, state) to resume for a job whose latest standard run the cluster lost: that run's newest complete
    retained checkpoint, else (lost before its first) the state that run had itself resumed. None when the run
    was not lost, was never noted, or left nothing here (a cluster of its own keeps its checkpoints elsewhere).
    Raises FlinkUnavailable/FlinkRequestError: no answer is not "not lost"."""
    note = _lost_runs(settings, rest).get(name)
    state = None if note is None else _last_state(settings, note)
    return None if note is None or state is None else (note.run, state)


def _last_state(settings: Settings, note: RunNote) -> str | None:
    complete = [(int(p.name.removeprefix("chk-")), p) for p in _checkpoints_of(settings, note.run).glob("chk-*")
                if p.name.removeprefix("chk-").isdigit() and (p / "_metadata").is_file()]
    if complete:
        return str(max(complete, key=lambda c: c[0])[1])
    if note.resumed and (local_state(note.resumed) / "_metadata").is_file():
        return note.resumed
    return None


def waiting_to_resume(settings: Settings) -> list[str]:
    """The jobs not running whose state a standard submit would resume (parked by `down`, or a run the cluster
    lost): for `up` without `--with-jobs` to say so. Empty when no cluster answers."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable

    try:
        rest = cluster(settings)
        lost = [name for name, note in _lost_runs(settings, rest).items() if _last_state(settings, note) is not None]
        return sorted({*parked(settings), *lost} - set(active_catalog_jobs(rest)))
    except (FlinkUnavailable, FlinkRequestError, StackError):
        return []


def resubmit_lost(settings: Settings, progress: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Submit again each job whose latest standard run the cluster lost (for the watchdog, once it restarted
    Flink); each continues from its last checkpoint. Returns the names submitted; raises StackError naming the
    ones that could not be (after trying every one), so that the caller tries again later."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable

    try:
        lost = _lost_runs(settings, cluster(settings))
    except (FlinkUnavailable, FlinkRequestError, StackError) as exc:
        raise StackError(f"lost jobs not resubmitted: {exc}") from None
    done, failed = [], []
    for name, note in lost.items():
        try:
            submit_job(settings, name, progress=progress)
        except Exception as exc:  # noqa: BLE001 - each job on its own; the caller retries what failed
            progress(f"{name} not resubmitted: {type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        progress(f"{name} resubmitted (its run {note.run} was lost with the cluster)")
        done.append(name)
    if failed:
        raise StackError(f"not resubmitted: {', '.join(failed)}")
    return done


def _kafka_route(settings: Settings, progress: Callable[[str], None]) -> Settings:
    """The settings a job's Kafka clients use: through Toxiproxy, as the services, when chaos is on and the proxy
    answers; else the broker itself (a stack started without Toxiproxy, or a Kafka without its listener)."""
    from tradesim.adapters.kafka.client import broker_count
    from tradesim.adapters.kafka.errors import KafkaUnavailable

    routed = settings.routed()
    if routed.kafka.bootstrap == settings.kafka.bootstrap:
        return settings
    try:
        broker_count(routed.kafka, timeout_s=3)
    except KafkaUnavailable:
        progress(f"the Kafka proxy at {routed.kafka.bootstrap} does not answer: the job reaches Kafka directly")
        return settings
    return routed


def submit_standard_jobs(settings: Settings, progress: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Submit every standard job that is not running (for `tradesim up --with-jobs`, `tradesim run`); returns
    one line per job. The submissions run side by side: each is a client process that mostly waits on the
    cluster. A failed one does not stop the others; its error is raised once all are done, naming what was
    submitted."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from tradesim.lifetime import stop_children
    from tradesim.stack.flink import Flink

    rest = cluster(settings)
    lines, todo = [], []
    for spec in JOBS.values():
        if spec.standard:
            already = running(rest, spec.flink_name)
            if already:
                lines.append(f"already running {spec.name}: job {already[0].id}")
            else:
                todo.append(spec.name)
    if not todo:
        return lines
    Flink(settings).provision_locked(progress)  # once, before the clients that would each check it
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        futures = {name: pool.submit(submit_job, settings, name, progress=progress, provisioned=True)
                   for name in todo}
        try:
            wait(futures.values())
        except KeyboardInterrupt:  # their `flink run` clients are out of the terminal's reach: stopped here
            stop_children()
            raise
    failed: list[BaseException] = []
    for name, future in futures.items():
        exc = future.exception()
        if exc is None:
            lines.append(f"{'submitted' if future.result()[1] else 'already running'} {name}: job "
                         f"{future.result()[0]}")
        else:
            failed.append(exc)
    if failed:
        first, also = failed[0], [f"also: {exc}" for exc in failed[1:]]
        if lines or also:
            first.args = (f"{first} ({'; '.join(also + lines)})",)  # same type; the other jobs' fate too
        raise first
    return lines
