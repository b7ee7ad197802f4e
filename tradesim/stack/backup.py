"""`tradesim backup DIR` and `tradesim restore DIR`: the whole stack's data to a folder and back onto an empty
stack. The order of the steps is what makes the copy consistent; docs/design/backup.md says why."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from tradesim import __version__
from tradesim.files import replace_text
from tradesim.settings import Settings
from tradesim.stack.errors import StackError, UserError
from tradesim.stack.marks import (
    begin_rebuild,
    begin_restore,
    forget_unfinished_restore,
    short_models,
    unfinished_restore,
)
from tradesim.text import validation_message

FORMAT = 1
#: a backup with late orders (an older tradesim must refuse it rather than restore without them)
LATE_FORMAT = 2
MANIFEST = "manifest.json"
#: services that read or write Kafka and DynamoDB: stopped while a restore writes underneath them
SERVICES = ("marketdata", "persistence", "api")
SNAPSHOT = "tradesim"
SNAPSHOT_TIMEOUT_S = 600.0


class Steps(Protocol):
    """How progress is shown: one task per step, with a total when it is known in advance."""

    def start(self, description: str, total: int | None) -> int: ...

    def advance(self, task: int, n: int) -> None: ...

    def finish(self, task: int) -> None: ...


class NoSteps:
    def start(self, description: str, total: int | None) -> int:
        return 0

    def advance(self, task: int, n: int) -> None:
        pass

    def finish(self, task: int) -> None:
        pass


NO_STEPS = NoSteps()


@dataclass
class Manifest:
    """What a backup holds; written last, so a folder without it is an unfinished backup."""

    format: int
    tradesim_version: str
    started_at: float
    #: when the Kafka offsets were read: orders accepted after this are not in the backup (the recovery point)
    recovery_point: float
    finished_at: float
    #: how long the jobs were stopped (orders accepted meanwhile waited in Kafka)
    jobs_paused_s: float = 0.0
    #: topic → [[partition, low, high], ...]
    kafka: dict[str, list[list[int]]] = field(default_factory=dict)
    #: consumer group → topic → partition (as a string, JSON keys) → committed offset
    groups: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: logical table → items
    dynamodb: dict[str, int] = field(default_factory=dict)
    #: table → rows
    clickhouse: dict[str, int] = field(default_factory=dict)
    #: concrete index → its aliases, as snapshotted
    opensearch: dict[str, list[str]] = field(default_factory=dict)
    #: job name → savepoint folder, relative to the backup folder
    jobs: dict[str, str] = field(default_factory=dict)
    #: topic → [[partition, records], ...]: orders claimed before the recovery point whose record reached Kafka
    #: after it; the restore appends them (see `_late_orders`)
    late: dict[str, list[list[int]]] = field(default_factory=dict)
    #: every file of the backup but the manifest, by its path relative to the backup folder → SHA-256 (hex): a
    #: restore reads them all before it touches the stack. Empty in backups made before it existed
    files: dict[str, str] = field(default_factory=dict)
    #: read models a rebuild had switched to a fresh copy and not caught up while they were copied: the restore
    #: marks them again, so `status` and `up` go on saying to rebuild them
    short_models: list[str] = field(default_factory=list)

    def save(self, folder: Path) -> None:
        """Written whole or not at all: a full disk or a kill mid-write leaves no manifest (an unfinished backup),
        not a torn one. Readable by all, as the backup's other files, for whoever restores it."""
        replace_text(folder / MANIFEST, json.dumps(asdict(self), indent=2) + "\n", mode=0o644)

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:  # a name too long, a manifest it may not read: the backup the user gave, before anything changes
            if not folder.exists():
                raise UserError(f"{folder} does not exist: give the folder `tradesim backup` wrote")
            if path.is_dir():
                raise UserError(f"{path} is a folder, not a backup manifest: this backup cannot be restored")
            if not path.is_file():
                raise UserError(f"{folder} is not a tradesim backup (no {MANIFEST}; an unfinished backup has none)")
            text = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read the backup's {MANIFEST} in {folder}: {exc.strerror or exc}") from None
        try:
            manifest = TypeAdapter(cls).validate_json(text, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the whole"
            raise UserError(f"{path} is not a valid backup manifest: {where}: {validation_message(first)}") from None
        except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser's depth
            raise UserError(f"{path} is not a valid backup manifest: {str(exc) or type(exc).__name__}") from None
        if manifest.format not in (FORMAT, LATE_FORMAT):
            raise UserError(f"{folder} is a backup of format {manifest.format}; this tradesim reads formats "
                            f"{FORMAT} and {LATE_FORMAT}")
        if any(len(span) != 3 or not 0 <= span[1] <= span[2] or span[0] < 0
               for spans in manifest.kafka.values() for span in spans):
            raise UserError(f"{path} is not a valid backup manifest: a Kafka span is not [partition, low, high] "
                            "with 0 <= low <= high")
        if any(len(part) != 2 or min(part) < 0 for parts in manifest.late.values() for part in parts):
            raise UserError(f"{path} is not a valid backup manifest: a late span is not [partition, records] of "
                            "numbers >= 0")
        for topic, parts in manifest.late.items():
            copied = [span[0] for span in manifest.kafka.get(topic, [])]
            late = [part[0] for part in parts]
            if len(set(late)) != len(late) or not set(late) <= set(copied):
                raise UserError(f"{path} is not a valid backup manifest: late records of {topic} name a partition "
                                "twice or one the backup did not copy")
        if not all(p.isascii() and p.isdigit() for topics in manifest.groups.values() for parts in topics.values()
                   for p in parts):
            raise UserError(f"{path} is not a valid backup manifest: a group's partition is not a number")
        copied_parts = {topic: {span[0] for span in spans} for topic, spans in manifest.kafka.items()}
        for group, topics in manifest.groups.items():  # checked here: the restore commits them after the log
            for topic, parts in topics.items():
                if any(o < 0 for o in parts.values()) or (
                        topic in copied_parts and not {int(p) for p in parts} <= copied_parts[topic]):
                    raise UserError(f"{path} is not a valid backup manifest: group {group}'s offsets of {topic} "
                                    "name a negative offset or a partition the backup did not copy")
        if not all(_SHA256.fullmatch(digest) and _inside(name) for name, digest in manifest.files.items()):
            raise UserError(f"{path} is not a valid backup manifest: a file is not a relative path inside the "
                            "backup with a SHA-256")
        return manifest

    def foreign(self, settings: Settings, folder: Path) -> list[str]:
        """What the manifest names that this stack does not have (a restore would stop half-way on it)."""
        from tradesim.adapters.clickhouse.schema import TABLE, by_user
        from tradesim.adapters.search.trades import numbered_index
        from tradesim.stack.jobs import JOBS

        known = {"topic": set(_topics(settings)), "DynamoDB table": set(_tables()),
                 "ClickHouse table": {TABLE, by_user(TABLE)},
                 "job": set(JOBS), "read model": set(settings.persistence.SINKS)}
        named = {"topic": {*self.kafka, *(t for topics in self.groups.values() for t in topics)},
                 "DynamoDB table": self.dynamodb, "ClickHouse table": self.clickhouse, "job": self.jobs,
                 "read model": self.short_models}
        wrong = [f"{kind} {name!r}" for kind, names in named.items() for name in names if name not in known[kind]]
        alias = settings.opensearch.trades_index  # the restore replaces `<alias>-*` with the snapshot's indices
        wrong += [f"search index {name!r}" for name, aliases in self.opensearch.items()
                  if not numbered_index(alias, name) or set(aliases) - {alias}]
        wrong += [f"job {name}'s savepoint {path!r} (outside the backup)" for name, path in self.jobs.items()
                  if not _within(folder, path)]
        return wrong


def _within(folder: Path, path: str) -> bool:
    """Whether `path` (relative to `folder`) leads to a place inside `folder`; a loop of links (pathlib's
    RuntimeError) leads nowhere."""
    try:
        return (folder / path).resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _inside(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and "\0" not in name and not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below `folder` but the manifest, by relative path."""
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST}


#: the servers a backup and a restore read or write
_STORES = ("kafka", "dynamodb", "opensearch", "clickhouse", "flink")


@contextmanager
def _alone(settings: Settings, what: str) -> Iterator[None]:
    """One backup or restore at a time on a stack: two backups at once stopped each other's jobs mid-savepoint
    and both failed."""
    from tradesim.stack.state import LockHeld, file_lock

    try:
        with file_lock(settings.stack_dir / "backup.lock", wait=False):
            yield
    except LockHeld:
        raise UserError(f"another backup or restore of this stack is running; {what} when it has ended") from None


def _stores_up(settings: Settings) -> None:
    """StackError naming the stores that do not answer, before anything changes: a backup stopped the jobs and
    copied DynamoDB before it found OpenSearch down."""
    from tradesim.stack import registry
    from tradesim.stack.supervisor import Supervisor

    down = [row.name for row in Supervisor(settings, registry.build(settings, list(_STORES))).status()
            if not row.healthy]
    if down:
        raise StackError(f"{', '.join(down)} not running (start the stack with `tradesim up`); nothing was changed")


def _local_only(settings: Settings) -> None:
    from tradesim.stack.flink import Flink
    from tradesim.stack.opensearch import OpenSearch

    for comp in (Flink(settings), OpenSearch(settings)):
        if comp.external:
            raise UserError(f"backup and restore need the local {comp.name} (savepoints and snapshots are files on "
                            f"its machine); {comp.name} points at {comp.shown_address()}: use that service's own "
                            "backups")


def _topics(settings: Settings) -> list[str]:
    """Every topic the stack creates (one list: a topic added there is backed up too)."""
    from tradesim.stack.kafka import Kafka

    return [spec.name for spec in Kafka(settings).topic_specs()]


def _tables() -> list[str]:
    from tradesim.adapters.dynamodb.tables import TABLES

    return [t.name for t in TABLES]


def _partition_file(folder: Path, topic: str, partition: int) -> Path:
    return folder / "kafka" / topic / f"{partition}.bin.gz"


def _late_file(folder: Path, topic: str, partition: int) -> Path:
    return folder / "kafka" / topic / f"{partition}.late.bin.gz"


def _check_files(folder: Path, manifest: Manifest) -> None:
    """Every file of the backup is as it was written (its SHA-256), and every compressed file the manifest names
    reads to its end (gzip checks each one's CRC and length), so a damaged backup is refused before the stack is
    touched, not half restored. A backup made before the digests: the savepoints and the snapshot are there."""
    from tradesim.adapters.kafka.archive import misplaced, read

    for name, digest in manifest.files.items():
        path = folder / name
        try:
            same = _sha256(path) == digest
        except OSError as exc:
            raise UserError(f"{path} is missing or unreadable ({exc.strerror or exc}): this backup cannot be "
                            "restored") from None
        if not same:
            raise UserError(f"{path} is not as the backup wrote it (its SHA-256 differs): this backup cannot be "
                            "restored")
    needed = [folder / path / "_metadata" for path in manifest.jobs.values()]
    needed += [folder / "opensearch"] if manifest.opensearch else []
    for path in needed:
        if not path.exists():
            raise UserError(f"{path} is missing: this backup cannot be restored")
    for topic, parts in manifest.kafka.items():  # read through, and each record where the manifest's span says
        for partition, low, high in parts:
            path = _partition_file(folder, topic, partition)
            with _unless_damaged(path):
                wrong = misplaced(path, low, high)
            if wrong:
                raise UserError(f"{path} does not match the manifest's span of {topic}[{partition}] ({wrong}): this "
                                "backup cannot be restored")
    for topic, late in manifest.late.items():  # counted as the restore will append them
        for partition, count in late:
            path = _late_file(folder, topic, partition)
            with _unless_damaged(path):
                n = sum(1 for _ in read(path))
            if n != count:
                raise UserError(f"{path} holds {n} records, the manifest says {count}: this backup cannot be "
                                "restored")
    for table, count in manifest.dynamodb.items():  # an item a line, as the export counted them
        path = folder / "dynamodb" / f"{table}.jsonl.gz"
        with _unless_damaged(path), gzip.open(path, "rb") as data:
            n = sum(chunk.count(b"\n") for chunk in iter(partial(data.read, 1 << 20), b""))
        if n != count:
            raise UserError(f"{path} holds {n} items, the manifest says {count}: this backup cannot be restored")
    for path in (folder / "clickhouse" / f"{table}.native.gz" for table in manifest.clickhouse):
        with _unless_damaged(path), gzip.open(path, "rb") as data:
            while data.read(1 << 20):
                pass


@contextmanager
def _unless_damaged(path: Path) -> Iterator[None]:
    """A backup file that is missing or does not read to its end refuses the restore (UserError)."""
    from tradesim.adapters.kafka.archive import ArchiveError

    try:
        yield
    except (OSError, EOFError, zlib.error, ArchiveError) as exc:  # (gzip's BadGzipFile is an OSError)
        raise UserError(f"{path} is missing or damaged ({exc}): this backup cannot be restored") from None


def _doubled_jobs(settings: Settings) -> dict[str, list[str]]:
    """Standard jobs running more than once: name → ids."""
    from tradesim.stack import jobs

    return jobs.doubled(jobs.cluster(settings).jobs(with_checkpoints=False))


def _running_jobs(settings: Settings) -> dict[str, str]:
    """Catalog name → id of every tradesim job running on the cluster."""
    from tradesim.stack import jobs

    return jobs.active_catalog_jobs(jobs.cluster(settings))


@contextmanager
def failures(what: Callable[[], str]) -> Iterator[None]:
    """A server that fails or refuses mid-way becomes one StackError line naming the step's purpose; `what` is
    worded when it fails, by what is left then (a restore that changed nothing yet says so)."""
    from confluent_kafka import KafkaException

    from tradesim.adapters.dynamodb.errors import DynamoDBError
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.adapters.kafka.archive import ArchiveError
    from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaUnavailable
    from tradesim.adapters.search.errors import SearchRequestError
    from tradesim.ports import Unavailable

    try:
        yield
    except (Unavailable, DynamoDBError, FlinkRequestError, FlinkUnavailable, ArchiveError, KafkaUnavailable,
            KafkaDeliveryError, KafkaException, SearchRequestError, OSError, EOFError, ValueError, zlib.error) as exc:
        # (OSError: files, timeouts; EOFError, ValueError and zlib.error: a damaged backup file)
        raise StackError(f"{what()} stopped: {str(exc).strip() or type(exc).__name__}") from None


@contextmanager
def _step(steps: Steps, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    task = steps.start(description, total)
    yield lambda n: steps.advance(task, n)
    steps.finish(task)


# ---- backup ------------------------------------------------------------------------------------------------


def backup(settings: Settings, folder: Path, steps: Steps = NO_STEPS) -> Manifest:
    """Copy the stack's data into `folder` (new or empty) while the stack keeps taking orders. The jobs stop with a
    savepoint for the duration and resume from it, so orders wait in Kafka rather than being lost."""
    _local_only(settings)
    folder = Path(os.path.abspath(folder))  # `new/../mine` is mine: what exists and what it makes are told apart
    try:  # a name the system refuses (too long, a loop of links) is the user's to change
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UserError(f"{folder} exists and is not an empty folder; back up into a new one")
        if folder.resolve().is_relative_to(settings.stack_dir.resolve()):
            raise UserError(f"{folder} is inside the stack's own folder ({settings.stack_dir}), which `tradesim down "
                            "--purge` deletes before a restore; back up elsewhere")
        made = next((p for p in reversed((folder, *folder.parents)) if not p.exists()), None)
    except (OSError, RuntimeError) as exc:  # (RuntimeError: pathlib's word for a loop of links)
        raise UserError(f"cannot make the backup folder {folder}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ".written").touch()  # a folder it may not write (read-only, immutable) failed in Flink's
            (folder / ".written").unlink()  # savepoint
        except OSError as exc:  # a path the user chose that cannot be a folder here (a file on the way, /proc, ...)
            raise UserError(f"cannot make or write the backup folder {folder}: {exc.strerror or exc}") from None
        started = time.time()
        _stores_up(settings)  # first: a stack that is down is one line, whatever else is wrong
        with _alone(settings, "back up"):
            return _backup(settings, folder, steps, started)
    except BaseException:  # whatever stopped it (a Flink or Kafka error too): having written nothing, it leaves nothing
        _unmake(folder, made)
        raise


def _unmake(folder: Path, made: Path | None) -> None:
    """Remove `folder` and the folders the backup made on the way to it (up to `made`, the first that did not exist)
    while they are empty: a backup that wrote nothing leaves nothing behind."""
    if made is None:
        return
    for path in (folder, *folder.parents):
        try:
            path.rmdir()  # only an empty folder
        except OSError:
            return
        if path == made:
            return


def _backup(settings: Settings, folder: Path, steps: Steps, started: float) -> Manifest:
    from tradesim.adapters.dynamodb.archive import export_table
    from tradesim.adapters.dynamodb.client import DynamoDB
    from tradesim.adapters.kafka.archive import export_partition, group_offsets, spans
    from tradesim.stack import jobs

    twice = _doubled_jobs(settings)
    if twice:  # a backup stopped one of them, and the other went on deciding orders while trading was to be paused
        raise UserError("; ".join(f"{len(ids)} {name} jobs run ({', '.join(ids)})" for name, ids in twice.items())
                        + ": cancel all but one with `tradesim jobs cancel ID` and back up again")
    running = _running_jobs(settings)
    stopped_jobs = [name for name, spec in jobs.JOBS.items() if spec.standard and name not in running]
    if stopped_jobs:  # its state (the execution job's resting orders) would be missing from the backup
        raise UserError(f"job {', '.join(stopped_jobs)} is not running, so its state cannot be saved with the rest: "
                        "start it with `tradesim jobs submit NAME` (a job `down` or `jobs cancel --savepoint` "
                        "stopped resumes its state) and back up again")
    manifest = Manifest(FORMAT, __version__, started, 0.0, 0.0)
    rest = jobs.cluster(settings)
    savepoints: dict[str, str] = {}
    parts = []
    try:
        for name, job_id in running.items():
            with _step(steps, f"savepoint of job {name}"):
                try:
                    location = rest.stop_with_savepoint(job_id, str((folder / "flink" / name).resolve()))
                except BaseException:  # Ctrl-C too: Flink may finish the stop all the same
                    _uninterrupted(partial(_stopped_anyway, settings, name, folder, savepoints))
                    raise
                _stopped(settings, savepoints, name, location)
                manifest.jobs[name] = str(jobs.local_state(location).relative_to(folder.resolve()))
        topics = _topics(settings)
        with _step(steps, "consumer group offsets"):
            offsets = group_offsets(settings.kafka, topics)
            manifest.groups = {g: {t: {str(p): o for p, o in ps.items()} for t, ps in ts.items()}
                               for g, ts in offsets.items()}
        db = DynamoDB(settings.dynamodb)
        try:
            (folder / "dynamodb").mkdir()
            for table in _tables():
                with _step(steps, f"DynamoDB {table}") as advance:
                    manifest.dynamodb[table] = export_table(db, table, folder / "dynamodb" / f"{table}.jsonl.gz",
                                                            advance)
        finally:
            db.close()
        # after the tables: every order a recorded outcome names is then in the copied log
        manifest.recovery_point = time.time()
        parts = spans(settings.kafka, topics)
        # the read models before the jobs resume: they then hold no outcome beyond the copied log
        short = short_models(settings)
        with _step(steps, "OpenSearch snapshot"):
            manifest.opensearch = _snapshot(settings, folder / "opensearch")
        _export_clickhouse(settings, folder / "clickhouse", manifest, steps)
        manifest.short_models = sorted({*short, *short_models(settings)})  # also one switched during the copy
    finally:
        _uninterrupted(lambda: _resume(settings, savepoints, steps))
        manifest.jobs_paused_s = round(time.time() - started, 1) if savepoints else 0.0
    for span in parts:  # up to the offsets read above, while the jobs run again
        (folder / "kafka" / span.topic).mkdir(parents=True, exist_ok=True)
        with _step(steps, f"Kafka {span.topic}[{span.partition}]", span.count) as advance:
            done = export_partition(settings.kafka, span, _partition_file(folder, span.topic, span.partition),
                                    advance)
        manifest.kafka.setdefault(span.topic, []).append([span.partition, done.low, done.high])
    with _step(steps, "orders claimed before the recovery point"):
        _late_orders(settings, folder, manifest)
    if manifest.late:
        manifest.format = LATE_FORMAT
    with _step(steps, "checksums"):
        manifest.files = _digests(folder)
    manifest.finished_at = time.time()
    manifest.save(folder)
    return manifest


def _late_orders(settings: Settings, folder: Path, manifest: Manifest) -> None:
    """Copy the records of the orders whose claim is in the copied `Orders` table but whose record reached
    `trade_orders` after the recovery point (the API claims, then publishes): restored without them, such an order
    would stay `accepted`, in no book, until it expired. Only records found: a claim whose publish failed has none.
    """
    from tradesim.adapters.kafka.acked import REPORT_GRACE_S
    from tradesim.adapters.kafka.archive import Record, records_after, write

    topic = settings.topics.trade_orders
    waiting = _unlogged_claims(folder, manifest, topic)
    if not waiting:
        return
    # a claim copied before the recovery point was published, refused or timed out by then plus the API's deadline
    time.sleep(max(0.0, manifest.recovery_point + settings.api.kafka_timeout_s + REPORT_GRACE_S - time.time()))
    found: dict[int, list[Record]] = {}
    start = {partition: high for partition, _low, high in manifest.kafka.get(topic, [])}
    for partition, rec in records_after(settings.kafka, topic, start):
        order_id = _placed_id(rec.value, waiting)
        if order_id is not None:
            del waiting[order_id]
            found.setdefault(partition, []).append(rec)
            if not waiting:
                break
    for partition, records in sorted(found.items()):
        write(_late_file(folder, topic, partition), records)
        manifest.late.setdefault(topic, []).append([partition, len(records)])


def _unlogged_claims(folder: Path, manifest: Manifest, topic: str) -> dict[str, int]:
    """Order id → placing time of the orders claimed in the copied `Orders`, neither decided nor in a book, whose
    `OrderPlaced` the copied `topic` lacks."""
    from tradesim.adapters.dynamodb.archive import read_items
    from tradesim.adapters.dynamodb.orders import ACCEPTED, plain_item
    from tradesim.adapters.dynamodb.tables import ORDERS
    from tradesim.adapters.kafka.archive import read
    from tradesim.domain.orders import awaiting_book

    waiting = {item["order_id"]: item["placed_at_ms"]
               for raw in read_items(folder / "dynamodb" / f"{ORDERS}.jsonl.gz", ACCEPTED)
               if awaiting_book((item := plain_item(raw)).get("status"), bool(item.get("in_book")))}
    for partition, _low, _high in manifest.kafka.get(topic, []):
        for rec in read(_partition_file(folder, topic, partition)):
            if not waiting:
                return waiting
            order_id = _placed_id(rec.value, waiting)
            if order_id is not None:
                del waiting[order_id]
    return waiting


def _placed_id(value: bytes | None, among: dict[str, int]) -> str | None:
    """The order id of a `trade_orders` record placing one of the orders `among` (id → placing time: a claim
    released and made again under the same id is another order); None for anything else."""
    from tradesim.domain.errors import InvalidRecord
    from tradesim.domain.events import OrderPlaced, decode_trade_order

    if value is None:
        return None
    try:
        event = decode_trade_order(value)
    except InvalidRecord:
        return None
    if isinstance(event, OrderPlaced) and among.get(event.order_id) == event.placed_at_ms:
        return event.order_id
    return None


def _stopped(settings: Settings, savepoints: dict[str, str], name: str, location: str) -> None:
    """Job `name` stopped with its savepoint at `location`: to be resumed at the end, and noted as parked at once,
    so that if the resume never comes (the command killed, its `flink run` client gone) the job's next plain
    submit (`up --with-jobs`, `jobs submit NAME`) resumes that state instead of starting without its books."""
    from tradesim.stack import jobs

    savepoints[name] = location
    jobs.note_parked(settings, name, location)


def _stopped_anyway(settings: Settings, name: str, folder: Path, savepoints: dict[str, str],
                    wait_s: float = 30.0) -> None:
    """The stop of job `name` was triggered but not confirmed: if the job stops after all, it must resume too.
    Waits for it to either run on or finish, and adds its savepoint to `savepoints` when it finished."""
    from tradesim.stack import jobs

    rest = jobs.cluster(settings)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if name not in _running_jobs(settings):
            done = sorted((folder / "flink" / name).glob("savepoint-*"), key=lambda p: p.stat().st_mtime)
            if done:
                _stopped(settings, savepoints, name, str(done[-1].resolve()))
            return
        job = next((j for j in rest.jobs(with_checkpoints=False) if jobs.name_of(j.name) == name and j.active), None)
        if job is not None and job.state == "RUNNING":
            return  # the stop did not happen: it runs on
        time.sleep(0.5)  # the job is stopping: its state changes on Flink's side


def _restored_from(settings: Settings, job_id: str, location: str) -> bool:
    """Whether the job restored its state from the savepoint at `location`."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
    from tradesim.stack import jobs

    try:
        restored = jobs.cluster(settings).restored_from(job_id)
    except (FlinkUnavailable, FlinkRequestError, StackError):
        return False
    return restored is not None and jobs.local_state(restored).resolve() == jobs.local_state(location).resolve()


def _uninterrupted(call: Callable[[], None]) -> None:
    """Run `call` to its end in a thread of its own, even if Ctrl-C comes meanwhile (it is raised after): a Ctrl-C
    in the middle of the resume left a job stopped whose resume had not started yet. A second request stops the
    process at once (`tradesim.cli.app`), which this does not hold up. It waits on an event, not `Thread.join`:
    a join that Ctrl-C interrupted returned at once the next time, with the thread still running (Python 3.11)."""
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="clean-up").start()  # not a daemon: an exiting interpreter waits for it
    interrupted = False
    while not done.is_set():
        try:
            done.wait(0.2)
        except KeyboardInterrupt:
            interrupted = True
    if failure:
        raise failure[0]
    if interrupted:
        raise KeyboardInterrupt


def _resume(settings: Settings, savepoints: dict[str, str], steps: Steps) -> None:
    """Submit each job from its savepoint, all at once (a submission is mostly waiting on the Flink client)."""
    from tradesim.stack import jobs

    if not savepoints:
        return
    task = steps.start(f"resume jobs {', '.join(savepoints)}", len(savepoints))

    def one(name: str, location: str) -> None:
        how = f"`tradesim jobs submit {name} --from-savepoint {jobs.local_state(location)}`"
        try:
            # provisioned: it ran until the backup stopped it (and a check's `java -version`, in the terminal's
            # process group, died with a Ctrl-C there, failing the resume)
            job_id, new = jobs.submit_job(settings, name, options={jobs.RECOVERY: location}, provisioned=True)
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, the savepoint and the way back are named
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StackError(f"job {name} did not resume ({first}); submit it with {how}") from None
        if not new and not _restored_from(settings, job_id, location):
            # someone started it meanwhile, without the state (a plain submit resumes it: it is noted as parked)
            raise StackError(f"job {name} was started by someone else while it was stopped, without its savepoint; "
                             f"cancel it and submit it with {how}")
        steps.advance(task, 1)

    with ThreadPoolExecutor(len(savepoints)) as pool:
        futures = [pool.submit(one, n, loc) for n, loc in savepoints.items()]
    # every job that did not resume is named with its savepoint (the first alone left the others unsaid)
    failed = [exc for exc in (f.exception() for f in futures) if exc is not None]
    if len(failed) > 1 and all(isinstance(exc, StackError) for exc in failed):
        raise StackError("; ".join(map(str, failed))) from None
    if failed:
        raise failed[0]


def _snapshot(settings: Settings, into: Path) -> dict[str, list[str]]:
    """Snapshot the trades indices into the node's repository folder, then move the repository into `into`."""
    from tradesim.adapters.search.trades import TradeIndex
    from tradesim.stack.opensearch import OpenSearch

    repo = f"tradesim-backup-{uuid.uuid4().hex[:8]}"
    location = OpenSearch(settings).snapshots / repo
    index = TradeIndex.from_settings(settings.opensearch, timeout_s=SNAPSHOT_TIMEOUT_S)
    try:
        layout = {name: sorted(aliases) for name, aliases in index.indices().items()}
        index.client.put_fs_repository(repo, str(location))
        try:
            index.client.snapshot(repo, SNAPSHOT, sorted(layout), SNAPSHOT_TIMEOUT_S)
        finally:
            index.client.delete_repository(repo)
        shutil.move(str(location), str(into))
        return layout
    finally:
        index.close()
        shutil.rmtree(location, ignore_errors=True)


def _export_clickhouse(settings: Settings, into: Path, manifest: Manifest, steps: Steps) -> None:
    from tradesim.adapters.clickhouse.archive import export_table
    from tradesim.adapters.clickhouse.trades import TradeStore

    into.mkdir()
    store = TradeStore.from_settings(settings.clickhouse)
    try:
        for table in store.tables:
            with _step(steps, f"ClickHouse {table}"):
                manifest.clickhouse[table] = export_table(store.client, table, into / f"{table}.native.gz")
    finally:
        store.close()


# ---- restore -----------------------------------------------------------------------------------------------


@dataclass
class RestoreProgress:
    """What a restore that stopped had done, for the line that tells the user what is left."""

    #: each of the empty stack's jobs as its cancel is asked for, before the data changes (a restore that stops
    #: then has changed no data, but those jobs no longer run)
    cancelled: list[str] = field(default_factory=list)
    #: every store holds the whole backup: what stopped the restore was the start of the services it had stopped
    restored: bool = False


def restore(settings: Settings, folder: Path, steps: Steps = NO_STEPS, progress: RestoreProgress | None = None,
            ) -> Manifest:
    """Put a backup back onto an empty stack (`tradesim down --purge && tradesim up`): every Kafka record at its
    old offset, the groups' offsets, the tables, the indices, and the jobs from their savepoints. `progress` says
    how far it got."""
    manifest = Manifest.load(folder)
    foreign = manifest.foreign(settings, folder)
    if foreign:
        raise UserError(f"{folder} names what this stack does not have: {', '.join(foreign)} (a backup of a stack "
                        "with other settings?)")
    _local_only(settings)
    with _step(steps, "check the backup's files"):
        _check_files(folder, manifest)
    _stores_up(settings)
    with _alone(settings, "restore"):
        return _restore(settings, folder, manifest, steps, RestoreProgress() if progress is None else progress)


def _restore(settings: Settings, folder: Path, manifest: Manifest, steps: Steps, progress: RestoreProgress,
             ) -> Manifest:
    from tradesim.adapters.clickhouse.archive import import_table
    from tradesim.adapters.clickhouse.trades import TradeStore
    from tradesim.adapters.dynamodb import archive as dynamo
    from tradesim.adapters.dynamodb.client import DynamoDB
    from tradesim.adapters.dynamodb.orders import OrderStore
    from tradesim.adapters.dynamodb.tables import OPEN_ORDERS, ORDERS
    from tradesim.adapters.kafka.archive import (
        ArchiveError,
        Span,
        append,
        commit_group_offsets,
        import_partition,
        read,
    )
    from tradesim.stack import registry
    from tradesim.stack.supervisor import Supervisor

    with _step(steps, "check the stack is empty"):
        held = _not_empty(settings, manifest)
    if held:
        unfinished = unfinished_restore(settings)
        raise UserError("restore needs an empty stack, and this one holds " + "; ".join(held)
                        + (f" ({unfinished})" if unfinished else
                           " (start an empty one with `tradesim down --purge && tradesim up`)"))
    _cancel_jobs(settings, progress.cancelled)  # (an empty stack's jobs hold nothing)
    begin_restore(settings, folder)  # from here on the stack's data changes; only a finished copy removes the mark
    stopped = Supervisor(settings, registry.build(settings, list(SERVICES))).down()
    try:
        for topic, parts in manifest.kafka.items():
            for partition, low, high in parts:
                span = Span(topic, partition, low, high)
                with _step(steps, f"Kafka {topic}[{partition}]", span.count) as advance:
                    import_partition(settings.kafka, span, _partition_file(folder, topic, partition), advance)
        for topic, late in manifest.late.items():  # after the log: they reached Kafka after the recovery point
            ends = {partition: high for partition, _low, high in manifest.kafka[topic]}
            for partition, count in late:
                with _step(steps, f"Kafka {topic}[{partition}], late orders", count) as advance:
                    n = append(settings.kafka, topic, partition, ends[partition],
                               read(_late_file(folder, topic, partition)))
                    advance(n)
                if n != count:
                    raise ArchiveError(f"{_late_file(folder, topic, partition)} holds {n} records, the manifest "
                                       f"says {count}")
        with _step(steps, "consumer group offsets"):
            commit_group_offsets(settings.kafka, {g: {t: {int(p): o for p, o in ps.items()} for t, ps in ts.items()}
                                                  for g, ts in manifest.groups.items()})
        db = DynamoDB(settings.dynamodb)
        try:
            for table, count in manifest.dynamodb.items():
                with _step(steps, f"DynamoDB {table}", count) as advance:
                    dynamo.import_table(db, table, folder / "dynamodb" / f"{table}.jsonl.gz", advance)
            if OPEN_ORDERS not in manifest.dynamodb:  # a backup from before the table: point at its resting orders
                with _step(steps, f"DynamoDB {OPEN_ORDERS} (from {ORDERS})"):
                    OrderStore(db).note_open_orders()
        finally:
            db.close()
        with _step(steps, "OpenSearch snapshot"):
            _restore_snapshot(settings, folder / "opensearch")
        store = TradeStore.from_settings(settings.clickhouse)
        try:
            for table in manifest.clickhouse:
                with _step(steps, f"ClickHouse {table}"):
                    import_table(store.client, table, folder / "clickhouse" / f"{table}.native.gz")
        finally:
            store.close()
        _resume(settings, {name: str((folder / path).resolve()) for name, path in manifest.jobs.items()}, steps)
        for model in manifest.short_models:
            begin_rebuild(settings, model)
        forget_unfinished_restore(settings)  # every store holds the whole backup now, whatever starts next
        progress.restored = True
    except BaseException as exc:
        if stopped:  # the services come back on a half-restored stack; a failed start must not hide the cause
            try:
                Supervisor(settings, registry.build(settings, stopped)).up()
            except StackError as again:
                raise StackError(f"{exc} (and {', '.join(stopped)} did not start again: {again})") from None
        raise
    if stopped:
        try:
            Supervisor(settings, registry.build(settings, stopped)).up()
        except StackError as exc:
            raise StackError(f"the backup is restored, but {', '.join(stopped)} did not start again: {exc} "
                             "(`tradesim up` starts them)") from None
    return manifest


def _not_empty(settings: Settings, manifest: Manifest) -> list[str]:
    """What the stack holds that a restore would mix with the backup's data (empty list: it is empty)."""
    from tradesim.adapters.clickhouse.archive import row_count
    from tradesim.adapters.clickhouse.trades import TradeStore
    from tradesim.adapters.dynamodb import archive as dynamo
    from tradesim.adapters.dynamodb.client import DynamoDB
    from tradesim.adapters.kafka.archive import spans
    from tradesim.adapters.search.trades import TradeIndex

    held: list[str] = []
    now = {(s.topic, s.partition): s for s in spans(settings.kafka, list(manifest.kafka))}
    for topic, parts in manifest.kafka.items():
        have = sorted(p for t, p in now if t == topic)
        if have != sorted(p[0] for p in parts):
            held.append(f"topic {topic} with {len(have)} partitions (the backup has {len(parts)}: set "
                        f"`kafka.partitions` to {len(parts)} before the purge and `up`)")
        elif any(now[(topic, p)].high for p in have):
            held.append(f"records in {topic}")
    db = DynamoDB(settings.dynamodb)
    try:
        held += [f"items in DynamoDB {t}" for t in manifest.dynamodb if not dynamo.is_empty(db, t)]
    finally:
        db.close()
    with TradeIndex.from_settings(settings.opensearch) as index:
        if index.current() and index.client.count(index.alias):
            held.append(f"documents in the search index {index.alias}")
    store = TradeStore.from_settings(settings.clickhouse)
    try:
        held += [f"rows in ClickHouse {t}" for t in manifest.clickhouse if row_count(store.client, t)]
    finally:
        store.close()
    return held


def _cancel_jobs(settings: Settings, cancelled: list[str]) -> None:
    """The jobs of an empty stack hold nothing; they make way for the backup's. Each is named in `cancelled` before
    its cancel is asked for (a Ctrl-C during the request may leave it cancelled all the same). Every run of each,
    a job running twice too: a run left going would decide the restored orders from no state."""
    from tradesim.stack import jobs

    rest = jobs.cluster(settings)  # StackError when no cluster is up
    for job in rest.jobs(with_checkpoints=False):
        name = jobs.name_of(job.name)
        if job.active and name in jobs.JOBS:
            if name not in cancelled:
                cancelled.append(name)
            jobs.cancel_job(settings, job.id)


def _restore_snapshot(settings: Settings, source: Path) -> None:
    """Delete the empty indices `up` made and restore the backup's, with their aliases."""
    from tradesim.adapters.search.trades import TradeIndex
    from tradesim.stack.opensearch import OpenSearch

    repo = f"tradesim-restore-{uuid.uuid4().hex[:8]}"
    location = OpenSearch(settings).snapshots / repo
    shutil.copytree(source, location)
    index = TradeIndex.from_settings(settings.opensearch, timeout_s=SNAPSHOT_TIMEOUT_S)
    try:
        for name in index.indices():
            index.client.delete_index(name)
        index.client.put_fs_repository(repo, str(location), readonly=True)
        try:
            index.client.restore(repo, SNAPSHOT, SNAPSHOT_TIMEOUT_S)
        finally:
            index.client.delete_repository(repo)
    finally:
        index.close()
        shutil.rmtree(location, ignore_errors=True)


def describe(manifest: Manifest) -> dict[str, Any]:
    """Counts for the CLI's summary line."""
    return {
        "kafka records": sum(high - low for parts in manifest.kafka.values() for _, low, high in parts)
        + sum(count for parts in manifest.late.values() for _, count in parts),
        "DynamoDB items": sum(manifest.dynamodb.values()),
        "search indices": len(manifest.opensearch),
        "ClickHouse rows": sum(manifest.clickhouse.values()),
        "job savepoints": len(manifest.jobs),
    }
