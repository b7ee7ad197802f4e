"""The backup manifest: written last, so a folder without one, or with a damaged or foreign one, is refused with
one line (exit 2 in the CLI) before a restore touches anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradesim.adapters.dynamodb.codec import to_dynamo
from tradesim.adapters.dynamodb.orders import order_item
from tradesim.adapters.kafka.archive import Record, write
from tradesim.domain.events import OrderCancelRequested, OrderPlaced, encode
from tradesim.settings import Settings
from tradesim.stack.backup import FORMAT, LATE_FORMAT, MANIFEST, Manifest, backup, describe, restore
from tradesim.stack.errors import UserError


def _manifest() -> Manifest:
    return Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"orders": [[0, 5, 9], [1, 0, 2]]},
                    groups={"g": {"orders": {"0": 7}}}, dynamodb={"Orders": 4}, clickhouse={"trades": 6},
                    opensearch={"trades-1": ["trades"]}, jobs={"execution": "flink/execution/savepoint-1"},
                    late={"orders": [[1, 2]]})


def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    _manifest().save(tmp_path)
    assert Manifest.load(tmp_path) == _manifest()
    assert describe(Manifest.load(tmp_path)) == {"kafka records": 8, "DynamoDB items": 4, "search indices": 1,
                                                 "ClickHouse rows": 6, "job savepoints": 1}


def test_a_manifest_written_before_late_orders_were_copied_reads_with_none(tmp_path: Path) -> None:
    written = {k: v for k, v in _manifest().__dict__.items() if k != "late"}
    (tmp_path / MANIFEST).write_text(json.dumps(written))
    assert Manifest.load(tmp_path).late == {}


def test_a_folder_without_a_manifest_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a tradesim backup"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "not a valid backup manifest"),
    (json.dumps({"format": FORMAT}), "not a valid backup manifest"),
    (json.dumps({**json.loads(json.dumps(_manifest().__dict__)), "format": LATE_FORMAT + 1}),
     f"format {LATE_FORMAT + 1}"),
    # before: AttributeError, TypeError and RecursionError tracebacks from inside the restore
    (json.dumps({**_manifest().__dict__, "kafka": []}), "kafka: Input should be an object"),
    (json.dumps({**_manifest().__dict__, "dynamodb": {"Orders": "4"}}), "dynamodb.Orders: Input should be"),
    (json.dumps({**_manifest().__dict__, "kafka": {"orders": [[0, 5]]}}), "a Kafka span is not"),
    (json.dumps({**_manifest().__dict__, "kafka": {"orders": [[-1, 5, 2]]}}), "a Kafka span is not"),
    (json.dumps({**_manifest().__dict__, "groups": {"g": {"orders": {"x": 1}}}}), "a group's partition"),
    (json.dumps({**_manifest().__dict__, "late": {"orders": [[0]]}}), "a late span is not"),
    (json.dumps({**_manifest().__dict__, "late": {"orders": [[0, -1]]}}), "a late span is not"),
    (json.dumps({**_manifest().__dict__, "late": {"orders": [[2, 1]]}}), "one the backup did not copy"),
    (json.dumps({**_manifest().__dict__, "late": {"orders": [[1, 1], [1, 2]]}}), "name a partition twice"),
    (json.dumps({**_manifest().__dict__, "late": {"other": [[0, 1]]}}), "one the backup did not copy"),
    ("[" * 100_000 + "]" * 100_000, "not a valid backup manifest"),
    (json.dumps({**_manifest().__dict__, "files": {"../x": "0" * 64}}), "a file is not a relative path"),
    (json.dumps({**_manifest().__dict__, "files": {"/etc/passwd": "0" * 64}}), "a file is not a relative path"),
    (json.dumps({**_manifest().__dict__, "files": {"a/./b": "0" * 64}}), "a file is not a relative path"),
    (json.dumps({**_manifest().__dict__, "files": {"a": "xyz"}}), "with a SHA-256"),
    # a probe: found only after the log was written, when the restore committed them
    (json.dumps({**_manifest().__dict__, "groups": {"g": {"orders": {"0": -3}}}}), "name a negative offset"),
    (json.dumps({**_manifest().__dict__, "groups": {"g": {"orders": {"7": 1}}}}), "a partition the backup did not"),
])
def test_a_damaged_or_foreign_manifest_is_refused(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(UserError, match=says):
        Manifest.load(tmp_path)


@pytest.mark.parametrize(("case", "says"), [
    ("name too long", r"^cannot read the backup's manifest\.json in .*: File name too long$"),
    ("unreadable", r"^cannot read the backup's manifest\.json in .*: Permission denied$"),
    ("a folder", r"manifest\.json is a folder, not a backup manifest"),  # before: "no manifest.json"
])
def test_a_backup_whose_manifest_cannot_be_read_is_refused_as_the_user_s_to_fix(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, says: str) -> None:
    """A probe: an unreadable manifest (or a folder name too long) ended the restore with exit 1 and "purge the
    stack and restore again" (an OSError through the CLI's server-failure wrapper) before anything was changed."""
    folder = tmp_path / ("b" * 300 if case == "name too long" else "bk")
    if case == "a folder":
        (folder / MANIFEST).mkdir(parents=True)
    elif case == "unreadable":  # (chmod does not stop root, who runs these tests in containers)
        folder.mkdir()
        _manifest().save(folder)
        read_bytes = Path.read_bytes

        def refused(path: Path) -> bytes:
            if path.name == MANIFEST:
                raise PermissionError(13, "Permission denied")
            return read_bytes(path)

        monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(UserError, match=says):
        restore(settings, folder)


def test_names_this_stack_does_not_have_are_refused_before_anything(settings: Settings, tmp_path: Path) -> None:
    manifest = _manifest()
    manifest.kafka = {"no_such_topic": [[0, 0, 1]]}
    manifest.late = {"no_such_topic": [[0, 1]]}
    manifest.groups = {"g": {"no_group_topic": {"0": 1}}}
    manifest.dynamodb = {"NoSuchTable": 0}
    manifest.clickhouse = {"x; drop": 1}
    manifest.jobs = {"execution": "../../elsewhere"}
    manifest.short_models = ["search", "../../x"]  # unchecked, its rebuild mark would go outside the stack folder
    # a backup of a stack whose search alias was another: the restore would bring back an index nothing reads
    manifest.opensearch = {"orders-2": ["orders"], "trades-3": ["orders"], "trades-4": ["trades"]}
    manifest.save(tmp_path)
    # no server runs here: a refusal that came after the first request would be a StackError, not this
    with pytest.raises(UserError, match="names what this stack does not have") as info:
        restore(settings, tmp_path)
    for named in ("topic 'no_such_topic'", "topic 'no_group_topic'",
                  "DynamoDB table 'NoSuchTable'", "ClickHouse table 'x; drop'",
                  "savepoint '../../elsewhere' (outside the backup)", "search index 'orders-2'", "read model '../../x'",
                  "search index 'trades-3'"):
        assert named in str(info.value)
    assert "trades-4" not in str(info.value)
    assert "'search'" not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_backup_folder_that_cannot_be_made_is_a_user_mistake(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="cannot make or write the backup folder"):  # before: a StackError (exit 1)
        backup(settings, tmp_path / "afile" / "sub")


@pytest.mark.parametrize(("name", "says"), [("b" * 300, "File name too long"), ("loop/bk", "Symlink loop")],
                         ids=["too long", "loop of links"])
def test_a_backup_folder_name_the_system_refuses_is_a_user_mistake(settings: Settings, tmp_path: Path, name: str,
                                                                    says: str) -> None:
    """A probe: a name too long ended with exit 1 and "(the folder has no manifest…; remove it)" though nothing was
    written (an OSError through the server-failure wrapper); a loop of links was a RuntimeError traceback."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UserError, match=f"^cannot make the backup folder .*: {says}"):
        backup(settings, tmp_path / name)


def test_a_backup_stopped_before_it_wrote_anything_leaves_nothing(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: a Flink error before the first savepoint left the empty folder (and the folders above it that the
    backup made); only a StackError removed it."""
    from tradesim.adapters.flink.errors import FlinkUnavailable
    from tradesim.stack import backup as module

    def unavailable(_settings: Settings) -> dict[str, list[str]]:
        raise FlinkUnavailable("connection refused")

    monkeypatch.setattr(module, "_stores_up", lambda _settings: None)
    monkeypatch.setattr(module, "_doubled_jobs", unavailable)
    (tmp_path / "mine").mkdir()
    for folder in (tmp_path / "new" / "deeper" / "bk", tmp_path / "mine"):
        with pytest.raises(FlinkUnavailable):
            backup(settings, folder)
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "mine").is_dir()  # the user's own empty folder stays


def test_a_backup_inside_the_stacks_own_folder_is_refused(settings: Settings) -> None:
    """Before: accepted, and the `down --purge` a restore starts with deleted it."""
    inside = settings.stack_dir / "kafka" / "mybackup"
    with pytest.raises(UserError, match="inside the stack's own folder"):
        backup(settings, inside)
    assert not inside.exists()


def test_a_backup_with_a_standard_job_stopped_is_refused_and_leaves_no_folder(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a backup with `execution` cancelled (its state parked) had no execution savepoint; restored, every
    resting order was gone from the book and could not be cancelled."""
    from tradesim.stack import backup as module

    monkeypatch.setattr(module, "_stores_up", lambda _settings: None)
    monkeypatch.setattr(module, "_running_jobs", lambda _settings: {"bars": "b1"})
    monkeypatch.setattr(module, "_doubled_jobs", lambda _settings: {})
    with pytest.raises(UserError, match=r"^job execution is not running, so its state cannot be saved"):
        backup(settings, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()


def test_a_backup_with_a_standard_job_running_twice_is_refused_and_leaves_no_folder(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: with two execution jobs running, a backup stopped one and the other went on deciding orders while
    trading was to be paused."""
    from tradesim.stack import backup as module

    monkeypatch.setattr(module, "_stores_up", lambda _settings: None)
    monkeypatch.setattr(module, "_doubled_jobs", lambda _settings: {"execution": ["a1", "a2"]})
    monkeypatch.setattr(module, "_running_jobs", lambda _settings: pytest.fail("the backup went on"))
    with pytest.raises(UserError, match=r"^2 execution jobs run \(a1, a2\): cancel all but one"):
        backup(settings, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()


def test_a_second_backup_or_restore_while_one_runs_is_refused_and_leaves_no_folder(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: two backups at once stopped each other's jobs mid-savepoint; both failed with a Java line."""
    from tradesim.stack import backup as module

    monkeypatch.setattr(module, "_stores_up", lambda _settings: None)
    monkeypatch.setattr(module, "_running_jobs", lambda _settings: pytest.fail("the second backup went on"))
    with module._alone(settings, "back up"):
        with pytest.raises(UserError, match=r"^another backup or restore of this stack is running; back up when"):
            backup(settings, tmp_path / "bk")
        assert not (tmp_path / "bk").exists()
    with pytest.raises(UserError, match=r"bk does not exist: give the folder `tradesim backup` wrote"):
        restore(settings, tmp_path / "bk")  # the lock is free again: the next check speaks (a probe: it said "is
        # not a tradesim backup (no manifest.json …)" of a folder that was not there)
    (tmp_path / "bk").mkdir()
    with pytest.raises(UserError, match="is not a tradesim backup"):
        restore(settings, tmp_path / "bk")


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_a_damaged_data_file_is_refused_before_the_stack_is_touched(settings: Settings, tmp_path: Path,
                                                                    damage: str) -> None:
    """Before: found halfway through the restore (topics written, jobs cancelled), with a zlib traceback."""
    import gzip

    manifest = Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [[0, 0, 1]]}, dynamodb={"Orders": 1})
    manifest.save(tmp_path)
    (tmp_path / "kafka" / "trade_orders").mkdir(parents=True)
    (tmp_path / "dynamodb").mkdir()
    good = gzip.compress(b"x" * 10_000)
    write(tmp_path / "kafka" / "trade_orders" / "0.bin.gz", [Record(0, 1, b"k", b"v", None)])
    damaged = {"flipped": good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:], "truncated": good[:-12]}
    if damage in damaged:
        (tmp_path / "dynamodb" / "Orders.jsonl.gz").write_bytes(damaged[damage])
    # no server runs here: a refusal that came after the first request would be a StackError, not this
    with pytest.raises(UserError, match=r"Orders\.jsonl\.gz is missing or damaged \(.+\): this backup cannot be "):
        restore(settings, tmp_path)


@pytest.mark.parametrize(("span", "offsets"), [([0, 0, 2], [0, 2]), ([0, 1, 3], [0, 1]), ([0, 0, 3], [1, 0]),
                                               ([0, 0, 3], [0, 2]), ([0, 5, 8], [6, 7]), ([0, 0, 3], [0, 1])])
def test_a_partition_file_that_is_not_its_span_is_refused_before_the_stack_is_touched(
        settings: Settings, tmp_path: Path, span: list[int], offsets: list[int]) -> None:
    """A probe: a manifest whose span disagreed with its file was restored (the manifest has no digest of its own);
    a record outside the span, or out of order, is now refused first."""
    manifest = Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [span]})
    manifest.save(tmp_path)
    (tmp_path / "kafka" / "trade_orders").mkdir(parents=True)
    write(tmp_path / "kafka" / "trade_orders" / "0.bin.gz", [Record(o, 1, b"k", b"v", None) for o in offsets])
    with pytest.raises(UserError, match=r"0\.bin\.gz does not match the manifest's span of trade_orders\[0\] "):
        restore(settings, tmp_path)


def test_a_missing_late_orders_file_is_refused_before_the_stack_is_touched(settings: Settings,
                                                                           tmp_path: Path) -> None:
    manifest = Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [[0, 0, 1]]},
                        late={"trade_orders": [[0, 1]]})
    manifest.save(tmp_path)
    (tmp_path / "kafka" / "trade_orders").mkdir(parents=True)
    write(tmp_path / "kafka" / "trade_orders" / "0.bin.gz", [Record(0, 1, b"k", b"v", None)])
    with pytest.raises(UserError, match=r"0\.late\.bin\.gz is missing or damaged"):
        restore(settings, tmp_path)


def test_a_late_orders_file_holding_other_than_the_manifest_says_is_refused_before_the_stack_is_touched(
        settings: Settings, tmp_path: Path) -> None:
    """A probe: a hand-edited late count was found only after the records were appended (exit 1, a restore
    half done)."""
    manifest = Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [[0, 0, 1]]},
                        late={"trade_orders": [[0, 5]]})
    manifest.save(tmp_path)
    (tmp_path / "kafka" / "trade_orders").mkdir(parents=True)
    write(tmp_path / "kafka" / "trade_orders" / "0.bin.gz", [Record(0, 1, b"k", b"v", None)])
    write(tmp_path / "kafka" / "trade_orders" / "0.late.bin.gz", [Record(1, 1, b"k", b"v", None)])
    with pytest.raises(UserError, match=r"0\.late\.bin\.gz holds 1 records, the manifest says 5"):
        restore(settings, tmp_path)


@pytest.mark.parametrize(("frame", "says"), [
    (b"cut", "is truncated in the record of offset 0"),  # a value shorter than its length, in a sound gzip
    (b"5", "the headers of the record of offset 0 do not read"),  # before: a TypeError traceback
    (b"{x", "the headers of the record of offset 0 do not read"),  # before: exit 1, "purge and restore again"
])
def test_a_partition_file_without_digests_that_does_not_read_is_refused_before_the_stack_is_touched(
        settings: Settings, tmp_path: Path, frame: bytes, says: str) -> None:
    """Backups made before the digests are restored on the archive's own checks alone (a probe)."""
    import gzip

    from tradesim.adapters.kafka.archive import _HEAD, MAGIC

    manifest = Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [[0, 0, 1]]})
    manifest.save(tmp_path)
    (tmp_path / "kafka" / "trade_orders").mkdir(parents=True)
    head = _HEAD.pack(0, 1, 1, 10, -1) if frame == b"cut" else _HEAD.pack(0, 1, 1, 1, len(frame))
    body = b"kv" + frame if frame != b"cut" else b"k" + b"short"
    (tmp_path / "kafka" / "trade_orders" / "0.bin.gz").write_bytes(gzip.compress(MAGIC + head + body))
    with pytest.raises(UserError, match=f"0\\.bin\\.gz is missing or damaged .*{says}"):
        restore(settings, tmp_path)


def _claimed(folder: Path, orders: list[tuple[OrderPlaced, dict[str, object]]],
             log: list[OrderPlaced | OrderCancelRequested]) -> Manifest:
    """A backup folder whose `Orders` export holds `orders` (with extra attributes) and whose copied trade_orders
    partition 0 holds `log`."""
    import gzip

    (folder / "dynamodb").mkdir()
    with gzip.open(folder / "dynamodb" / "Orders.jsonl.gz", "wt") as f:
        for order, extra in orders:
            f.write(json.dumps({k: to_dynamo(v) for k, v in {**order_item(order), **extra}.items()}) + "\n")
    (folder / "kafka" / "trade_orders").mkdir(parents=True)
    write(folder / "kafka" / "trade_orders" / "0.bin.gz",
          [Record(i, 1, o.key, encode(o), None) for i, o in enumerate(log)])
    return Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [[0, 0, len(log)]]})


def _order(order_id: str) -> OrderPlaced:
    return OrderPlaced(order_id=order_id, user_id="u1", symbol="ACME", side="buy", qty=1, order_type="market",
                       time_in_force="day", placed_at_ms=1_000)


def test_the_claims_a_late_copy_looks_for_are_those_waiting_whose_order_the_copied_log_lacks(
        tmp_path: Path) -> None:
    """Decided and resting orders do not wait; a waiting claim's order in the log is found; a cancel of a waiting
    order is not its order."""
    from tradesim.stack.backup import _unlogged_claims

    waiting, resting, decided, cancelled = (_order(f"o_{n}") for n in ("w", "r", "d", "c"))
    cancel = OrderCancelRequested(order_id=cancelled.order_id, user_id="u1", symbol="ACME", requested_at_ms=2_000)
    manifest = _claimed(tmp_path, [(waiting, {}), (resting, {"in_book": True}), (decided, {"status": "executed"}),
                                   (cancelled, {})], [decided, waiting, cancel])
    assert _unlogged_claims(tmp_path, manifest, "trade_orders") == {cancelled.order_id: 1_000}


def test_a_record_of_the_same_id_placed_at_another_time_is_another_order(tmp_path: Path) -> None:
    """A claim released after a refused publish and made again under the same id is another order: the first
    one's record does not stand for it."""
    from tradesim.stack.backup import _unlogged_claims

    first = _order("o_again")
    again = first.model_copy(update={"placed_at_ms": 2_000})
    manifest = _claimed(tmp_path, [(again, {})], [first])
    assert _unlogged_claims(tmp_path, manifest, "trade_orders") == {"o_again": 2_000}


def _written(folder: Path) -> Manifest:
    """A backup folder as `backup` leaves it: one Kafka partition, one table, a savepoint, the digests."""
    import gzip

    from tradesim.stack.backup import _digests

    (folder / "kafka" / "trade_orders").mkdir(parents=True)
    write(folder / "kafka" / "trade_orders" / "0.bin.gz",
          [Record(i, 1, b"u1", encode(_order(f"o_{i}")), None) for i in range(4)])
    (folder / "dynamodb").mkdir()
    (folder / "dynamodb" / "Orders.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    (folder / "flink" / "execution" / "savepoint-1").mkdir(parents=True)
    (folder / "flink" / "execution" / "savepoint-1" / "_metadata").write_bytes(b"state")
    manifest = Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"trade_orders": [[0, 0, 4]]}, dynamodb={"Orders": 1},
                        jobs={"execution": "flink/execution/savepoint-1"})
    manifest.files = _digests(folder)
    manifest.save(folder)
    return manifest


def test_a_backup_file_cut_short_inside_a_sound_gzip_is_refused_before_the_stack_is_touched(
        settings: Settings, tmp_path: Path) -> None:
    """A probe cut a partition's records short and compressed them again: the gzip layer was sound, the restore
    wrote one broken record of four, exit 0. Every file now carries its SHA-256 in the manifest."""
    import gzip

    manifest = _written(tmp_path)
    assert set(manifest.files) == {"kafka/trade_orders/0.bin.gz", "dynamodb/Orders.jsonl.gz",
                                   "flink/execution/savepoint-1/_metadata"}
    part = tmp_path / "kafka" / "trade_orders" / "0.bin.gz"
    part.write_bytes(gzip.compress(gzip.decompress(part.read_bytes())[:60]))
    with pytest.raises(UserError, match=r"0\.bin\.gz is not as the backup wrote it"):
        restore(settings, tmp_path)


@pytest.mark.parametrize("digests", [True, False])
def test_a_backup_missing_a_savepoint_is_refused_before_the_stack_is_touched(
        settings: Settings, tmp_path: Path, digests: bool) -> None:
    """A probe removed a job's savepoint: the restore wrote every store, then failed to resume the job, naming a
    savepoint that did not exist. A backup made before the digests is checked for its savepoints too."""
    import shutil

    manifest = _written(tmp_path)
    if not digests:
        manifest.files = {}
        manifest.save(tmp_path)
    shutil.rmtree(tmp_path / "flink" / "execution")
    with pytest.raises(UserError, match=r"savepoint-1/_metadata is missing"):
        restore(settings, tmp_path)


def test_a_job_that_does_not_resume_for_any_reason_is_named_with_its_savepoint(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: an OSError on the way (a bad TRADESIM_HOME) passed the resume's StackError wrapper, so the backup
    ended without saying where the stopped job's state was."""
    from tradesim.stack import jobs
    from tradesim.stack.backup import NO_STEPS, _resume
    from tradesim.stack.errors import StackError

    def fails(*_args: object, **_kwargs: object) -> tuple[str, bool]:
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(jobs, "submit_job", fails)
    with pytest.raises(StackError, match=r"job execution did not resume \(.*File exists.*\); submit it with "
                                         r"`tradesim jobs submit execution --from-savepoint /bk/sp-1`"):
        _resume(settings, {"execution": "file:/bk/sp-1"}, NO_STEPS)


def test_a_backup_with_a_store_down_changes_nothing_and_leaves_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: with OpenSearch down, a backup stopped the jobs and copied DynamoDB for 21 s of paused trading
    before it failed. The stores are checked before anything changes."""
    from tradesim.settings import load_settings
    from tradesim.stack.errors import StackError
    from tradesim.testing.net import free_port

    monkeypatch.chdir(tmp_path)
    nowhere = load_settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                            kafka={"port": free_port()}, dynamodb={"port": free_port()},
                            opensearch={"port": free_port()}, clickhouse={"http_port": free_port()},
                            flink={"rest_port": free_port()})
    # before: the jobs were asked for first, so the line named Flink alone and `up --only kafka,flink`
    with pytest.raises(StackError, match=r"^kafka, dynamodb, opensearch, clickhouse, flink not running \(start the "
                                         r"stack with `tradesim up`\); nothing was changed$"):
        backup(nowhere, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()


def test_a_restore_that_began_is_named_until_it_finishes_or_the_stack_is_purged(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    from tradesim.stack.marks import begin_restore, forget_unfinished_restore, unfinished_restore

    assert unfinished_restore(settings) is None
    begin_restore(settings, tmp_path / "monday")
    line = unfinished_restore(settings)
    assert line is not None
    assert f"a restore from {tmp_path / 'monday'} did not finish (started 2" in line
    assert line.endswith(f"tradesim restore {tmp_path / 'monday'}`")
    for odd in ('{"folder": ', '{"folder": "x", "started_at": 1e300}'):  # torn, or hand-edited: still unfinished
        (settings.stack_dir / "restore-unfinished.json").write_text(odd)
        assert unfinished_restore(settings) == ("a restore from a backup did not finish: the stack holds part of that "
                                                "backup; start over with `tradesim down --purge && tradesim up && "
                                                "tradesim restore DIR`")
    forget_unfinished_restore(settings)
    assert unfinished_restore(settings) is None


def test_a_rebuild_that_switched_is_named_until_it_finishes(settings: Settings) -> None:
    from tradesim.stack.marks import begin_rebuild, finish_rebuild, rebuild_marked, short_models, unfinished_rebuilds

    assert unfinished_rebuilds(settings) == []
    begin_rebuild(settings, "search")
    begin_rebuild(settings, "analytics")
    assert rebuild_marked(settings, "search")
    assert short_models(settings) == ["analytics", "search"]
    lines = unfinished_rebuilds(settings)
    assert [line.split(" stopped")[0] for line in lines] == ["a rebuild of analytics", "a rebuild of search"]
    assert lines[1].endswith("run `tradesim rebuild search` again")
    (settings.stack_dir / "rebuild-unfinished-search.json").write_text('{"model": ')  # torn: still named
    assert unfinished_rebuilds(settings)[1].startswith("a rebuild of search stopped at or after its switch to a "
                                                       "fresh copy: ")
    finish_rebuild(settings, "search")
    finish_rebuild(settings, "analytics")
    assert (unfinished_rebuilds(settings), rebuild_marked(settings, "search")) == ([], False)


def test_a_backup_s_resume_runs_to_its_end_through_a_ctrl_c() -> None:
    """An integration test of an interrupted backup failed one run in two: the execution job was never resumed. A
    `Thread.join` that Ctrl-C interrupted returned at once the next time, while the resume still ran."""
    import os
    import signal
    import threading

    from tradesim.stack.backup import _uninterrupted

    release, finished = threading.Event(), []

    def resume() -> None:
        release.wait(10)
        finished.append(True)

    # Ctrl-C while it runs, as Python's own handler raises it (a test run in the background inherits SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        threading.Timer(0.6, release.set).start()
        with pytest.raises(KeyboardInterrupt):
            _uninterrupted(resume)
    finally:
        signal.signal(signal.SIGINT, before)
    assert finished == [True]
    with pytest.raises(ValueError, match="its own"):  # a failure of the clean-up is raised as it is
        _uninterrupted(lambda: (_ for _ in ()).throw(ValueError("its own")))


def test_a_manifest_whose_write_fails_leaves_no_manifest(tmp_path: Path) -> None:
    """A probe: a full disk (or a kill) while the manifest was written left a torn manifest.json, so the folder of an
    unfinished backup had a manifest: the CLI said "nothing was written" of a folder holding the whole copy, and a
    restore called it a damaged manifest, not an unfinished backup. The manifest is now written aside and renamed."""
    import resource
    import signal

    (tmp_path / "kafka").mkdir()  # what the backup wrote before its manifest
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))  # a disk that fills after 64 bytes of the manifest
    try:
        with pytest.raises(OSError, match="File too large"):
            _manifest().save(tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kafka"]
    with pytest.raises(UserError, match="not a tradesim backup"):
        Manifest.load(tmp_path)
    _manifest().save(tmp_path)  # and with room, the manifest is there as written
    assert Manifest.load(tmp_path) == _manifest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kafka", MANIFEST]


def test_every_job_that_does_not_resume_is_named_with_its_savepoint(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: with two jobs failing to resume, the line named the first alone; the other stayed stopped with no
    word of it or of where its state was."""
    from tradesim.stack import jobs
    from tradesim.stack.backup import NO_STEPS, _resume
    from tradesim.stack.errors import StackError

    def fails(_settings: Settings, name: str, **_kwargs: object) -> tuple[str, bool]:
        raise StackError(f"flink run of {name} failed")

    monkeypatch.setattr(jobs, "submit_job", fails)
    with pytest.raises(StackError) as info:
        _resume(settings, {"execution": "file:/bk/sp-1", "bars": "file:/bk/sp-2"}, NO_STEPS)
    assert str(info.value) == (
        "job execution did not resume (flink run of execution failed); submit it with `tradesim jobs submit "
        "execution --from-savepoint /bk/sp-1`; job bars did not resume (flink run of bars failed); submit it with "
        "`tradesim jobs submit bars --from-savepoint /bk/sp-2`")


def test_a_savepoint_in_a_loop_of_links_is_refused_as_the_user_s_to_fix(settings: Settings, tmp_path: Path) -> None:
    """A probe: a job's savepoint folder that was a loop of links ended the restore with a RuntimeError traceback
    (pathlib's word for the loop) instead of one line."""
    manifest = _manifest()
    manifest.kafka, manifest.late, manifest.groups, manifest.dynamodb, manifest.clickhouse = {}, {}, {}, {}, {}
    manifest.opensearch = {}
    manifest.jobs = {"execution": "flink/loop"}
    manifest.save(tmp_path)
    (tmp_path / "flink").mkdir()
    (tmp_path / "flink" / "loop").symlink_to(tmp_path / "flink" / "loop")
    with pytest.raises(UserError, match=r"names what this stack does not have: job execution's savepoint "
                                        r"'flink/loop' \(outside the backup\)"):
        restore(settings, tmp_path)


def test_a_restore_cancels_every_job_of_the_empty_stack_a_job_running_twice_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: with a standard job running twice on the empty stack (an orphaned submit), the restore cancelled one
    (the catalog name → id map kept one id); the other went on deciding the restored orders from no state, and took
    the restored job's place. A Flink REST endpoint of this process's own stands in for the cluster."""
    import http.server
    import threading

    from tradesim.settings import load_settings
    from tradesim.stack.backup import _cancel_jobs

    states = {"e1": "RUNNING", "e2": "RUNNING", "b1": "RUNNING", "x1": "RUNNING"}
    names = {"e1": "tradesim-execution", "e2": "tradesim-execution", "b1": "tradesim-bars", "x1": "someone-else"}

    class Rest(http.server.BaseHTTPRequestHandler):
        def reply(self, body: object) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.reply({"taskmanagers": 1} if self.path == "/overview" else {"jobs": [
                {"jid": jid, "name": names[jid], "state": state, "start-time": n} for n, (jid, state)
                in enumerate(states.items())]})

        def do_PATCH(self) -> None:  # noqa: N802 - the stdlib's name
            states[self.path.split("/")[2].split("?")[0]] = "CANCELED"
            self.reply({})

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Rest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.chdir(tmp_path)
        settings = load_settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                                 flink={"rest_url": f"http://127.0.0.1:{server.server_address[1]}"})
        cancelled: list[str] = []
        _cancel_jobs(settings, cancelled)
    finally:
        server.shutdown()
        server.server_close()
    assert states == {"e1": "CANCELED", "e2": "CANCELED", "b1": "CANCELED", "x1": "RUNNING"}
    assert sorted(cancelled) == ["bars", "execution"]


def test_a_table_file_without_digests_holding_other_than_the_manifest_says_is_refused_before_the_stack_is_touched(
        settings: Settings, tmp_path: Path) -> None:
    """A probe: a backup made before the digests whose table file was cut short inside a sound gzip (an item a
    line) passed the checks, and the restore put back fewer items than the manifest counts, with exit 0."""
    import gzip

    manifest = _written(tmp_path)
    manifest.files = {}
    manifest.dynamodb = {"Orders": 3}
    manifest.save(tmp_path)
    (tmp_path / "dynamodb" / "Orders.jsonl.gz").write_bytes(gzip.compress(b"{}\n{}\n"))
    with pytest.raises(UserError, match=r"Orders\.jsonl\.gz holds 2 items, the manifest says 3: this backup cannot "):
        restore(settings, tmp_path)
