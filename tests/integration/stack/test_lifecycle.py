"""The native runtime against real processes: idempotent up, clean down, persistence, and its faults."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import consumer, producer
from tradesim.adapters.redis.client import connect
from tradesim.settings import Settings
from tradesim.stack.errors import PortInUseError, ProvisionError
from tradesim.stack.kafka import Kafka
from tradesim.stack.process import OsProcessTable
from tradesim.stack.redis import Redis
from tradesim.stack.state import ComponentRecord, StackState
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.net import free_port
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0




@pytest.fixture
def side_redis(settings: Settings, tmp_path: Path) -> Iterator[Supervisor]:
    """A second, throw-away Redis in its own home on a free port (faults are provoked on it, not the stack)."""
    s = settings.model_copy(update={"home": tmp_path / "home",
                                    "redis": settings.redis.model_copy(update={"port": free_port()})})
    sup = Supervisor(s, [Redis(s)])
    yield sup
    sup.down()


def test_up_twice_is_a_no_op(supervisor: Supervisor) -> None:
    before = {n: r.pid for n, r in supervisor.state_file.load().components.items()}
    rows = supervisor.up()
    after = {n: r.pid for n, r in supervisor.state_file.load().components.items()}
    assert before == after
    assert all(r.healthy for r in rows)
    # the live market runs on demand (`tradesim market start`): stopped and healthy until someone starts it
    assert all(r.state == "running" for r in rows if r.name != "market")


def test_port_taken_fails_fast_naming_component_port_and_setting(side_redis: Supervisor) -> None:
    port = side_redis.settings.redis.port
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        started = time.monotonic()
        with pytest.raises(PortInUseError) as exc:
            side_redis.up()
        assert time.monotonic() - started < 5
    msg = str(exc.value)
    assert f"redis: port 127.0.0.1:{port}" in msg
    assert "TRADESIM_REDIS__PORT" in msg
    assert side_redis.state_file.load().components == {}


def test_stale_state_pid_gone_is_reported_and_up_recovers(side_redis: Supervisor) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    rec = ComponentRecord(pid=gone.pid, start_ticks=1, started_at=time.time(), address="x", version="x",
                          log=str(side_redis.components[0].log_path))
    side_redis.state_file.save(StackState(components={"redis": rec}))
    (row,) = side_redis.status()
    assert row.state == "down"
    assert "stale state" in (row.detail or "")
    (row,) = side_redis.up()
    assert row.state == "running"
    assert row.healthy
    assert row.pid != gone.pid


def test_stale_state_pid_reused_by_unrelated_process_is_not_touched(side_redis: Supervisor) -> None:
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        rec = ComponentRecord(pid=unrelated.pid, start_ticks=1, started_at=time.time(), address="x", version="x",
                              log=str(side_redis.components[0].log_path))
        side_redis.state_file.save(StackState(components={"redis": rec}))
        (row,) = side_redis.status()
        assert row.state == "down"
        assert "another process" in (row.detail or "")
        side_redis.up()
        side_redis.down()
        assert unrelated.poll() is None  # never signalled
    finally:
        unrelated.kill()
        unrelated.wait()


def test_dead_component_shows_down_with_log_then_up_restarts_it(supervisor: Supervisor) -> None:
    record = supervisor.state_file.load().components["redis"]
    os.kill(record.pid, signal.SIGKILL)
    wait_for(lambda: not OsProcessTable().is_alive(record.handle), what="the killed server to be gone")
    row = next(r for r in supervisor.status() if r.name == "redis")
    assert row.state == "down"
    assert not row.healthy
    assert row.last_log_lines, "status must show the last log lines of a dead server"
    rows = {r.name: r for r in supervisor.up()}
    assert rows["redis"].state == "running"
    assert rows["redis"].pid != record.pid


def test_data_survives_down_and_up_and_down_leaves_nothing(supervisor: Supervisor, settings: Settings) -> None:
    topic = settings.topics.market_data
    tag = uuid.uuid4().hex
    p = producer(settings.kafka)
    p.produce(topic, key="AAPL", value=tag.encode())
    assert p.flush(30) == 0
    r = connect(settings.redis)
    r.set(f"persist:{tag}", "kept")
    r.close()

    records = supervisor.state_file.load().components
    supervisor.down()
    table = OsProcessTable()
    for name, rec in records.items():
        assert not table.is_alive(rec.handle), f"{name} still runs after down"
    ports = [spec for comp in supervisor.components for spec in comp.ports()]
    for spec in ports:
        assert not _listening(spec.host, spec.port), f"port {spec.port} still listening after down"
    assert supervisor.state_file.load().components == {}

    supervisor.up()
    assert connect(settings.redis).get(f"persist:{tag}") == "kept"
    c = consumer(settings.kafka, group_id=f"persist-{tag}")
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, pid, 0) for pid in parts])
    found = False
    deadline = time.monotonic() + 60
    while not found and time.monotonic() < deadline:
        found = any(m.error() is None and m.value() == tag.encode()
                    for m in c.consume(num_messages=1000, timeout=1.0))
    c.close()
    assert found, "a message produced before down must still be in Kafka after up"


def test_missing_mvn_gives_one_line_cause(settings: Settings, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = subprocess.run(["sh", "-c", "command -v java"], capture_output=True, text=True).stdout.strip()
    (bin_dir / "java").symlink_to(os.path.realpath(java))
    monkeypatch.setenv("PATH", str(bin_dir))
    s = settings.model_copy(update={"cache_dir": tmp_path / "cache"})
    with pytest.raises(ProvisionError) as exc:
        Kafka(s).provision(lambda _: None)
    assert str(exc.value).splitlines()[0] == "kafka: Maven (mvn) is not installed: `apt-get install -y maven`"


def test_missing_java_gives_one_line_cause(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"cache_dir": tmp_path / "cache",
                                    "stack": settings.stack.model_copy(update={"java_home": tmp_path / "nojdk"})})
    with pytest.raises(ProvisionError, match=r"^kafka: Java is not installed"):
        Kafka(s).provision(lambda _: None)


def test_failing_provisioning_command_reports_cause_and_tool_output(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"cache_dir": tmp_path / "cache",
                                    "kafka": settings.kafka.model_copy(update={"version": "0.0.0-nonexistent"})})
    with pytest.raises(ProvisionError) as exc:
        Kafka(s).provision(lambda _: None)
    assert exc.value.cause.startswith("mvn dependency:copy-dependencies failed (exit 1)")
    assert "0.0.0-nonexistent" in exc.value.output_tail
    assert not (tmp_path / "cache" / "kafka" / "0.0.0-nonexistent" / "libs").exists()
