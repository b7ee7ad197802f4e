"""The supervisor's decisions, with the process layer faked (no real server starts here)."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradesim.settings import Settings
from tradesim.stack.errors import PortInUseError, ProvisionError, StartError, UserError
from tradesim.stack.process import ProcessHandle
from tradesim.stack.state import MARKER
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.fakes import FakeComponent, FakeProcesses


@pytest.fixture
def procs() -> FakeProcesses:
    return FakeProcesses()


@pytest.fixture
def comps(settings: Settings, procs: FakeProcesses) -> list[FakeComponent]:
    return [FakeComponent(settings, "alpha", 7001, procs), FakeComponent(settings, "beta", 7002, procs)]


@pytest.fixture
def sup(settings: Settings, comps: list[FakeComponent], procs: FakeProcesses) -> Supervisor:
    return Supervisor(settings, list(comps), processes=procs)


def test_up_starts_all_and_records_state(sup: Supervisor, procs: FakeProcesses, comps: list[FakeComponent]) -> None:
    rows = sup.up()
    assert [(r.name, r.state, r.healthy) for r in rows] == [("alpha", "running", True), ("beta", "running", True)]
    assert procs.spawned == [["alpha-server"], ["beta-server"]]
    assert set(sup.state_file.load().components) == {"alpha", "beta"}
    assert all(c.initialized == 1 for c in comps)


def test_independent_servers_start_side_by_side_and_a_dependent_one_after_its_needs(
    settings: Settings, procs: FakeProcesses
) -> None:
    slow, quick, user = (FakeComponent(settings, n, p, procs) for n, p in (("slow", 7001), ("quick", 7002),
                                                                            ("user", 7003)))
    slow.answers_after = 3
    user.needs = ("slow",)
    events: list[tuple[str, str]] = []
    Supervisor(settings, [slow, quick, user], processes=procs,
               progress=lambda name, msg: events.append((name, msg))).up()
    order = [e for e in events if e[1] in ("starting", "healthy")]
    # quick starts without waiting for slow, and answers first; user starts only once slow answered
    assert order == [("slow", "starting"), ("quick", "starting"), ("quick", "healthy"), ("slow", "healthy"),
                     ("user", "starting"), ("user", "healthy")]
    assert procs.spawned == [["slow-server"], ["quick-server"], ["user-server"]]


def test_a_cycle_in_needs_is_an_error_not_a_hang(settings: Settings, procs: FakeProcesses) -> None:
    a, b = FakeComponent(settings, "a", 7001, procs), FakeComponent(settings, "b", 7002, procs)
    a.needs, b.needs = ("b",), ("a",)
    with pytest.raises(StartError, match="cycle"):
        Supervisor(settings, [a, b], processes=procs).up()
    assert procs.spawned == []


def test_up_twice_is_a_no_op(sup: Supervisor, procs: FakeProcesses) -> None:
    sup.up()
    pids = {n: r.pid for n, r in sup.state_file.load().components.items()}
    sup.up()
    assert len(procs.spawned) == 2
    assert {n: r.pid for n, r in sup.state_file.load().components.items()} == pids


def test_port_taken_fails_before_starting_anything(sup: Supervisor, procs: FakeProcesses) -> None:
    procs.foreign_ports.add(7002)
    with pytest.raises(PortInUseError) as exc:
        sup.up()
    msg = str(exc.value)
    assert "beta" in msg
    assert "7002" in msg
    assert "TRADESIM_BETA__PORT" in msg
    assert "nothing was started" in msg
    assert procs.spawned == []


def test_two_components_given_one_port_fail_before_starting_anything(settings: Settings,
                                                                     procs: FakeProcesses) -> None:
    """A probe: the check tried each port alone, found it free, and the second server failed after the first ran."""
    sup = Supervisor(settings, [FakeComponent(settings, "alpha", 7001, procs), FakeComponent(settings, "beta", 7001,
                                                                                            procs)], processes=procs)
    with pytest.raises(UserError, match=r"port 127\.0\.0\.1:7001 is given to alpha \(TRADESIM_ALPHA__PORT\) "
                       r"and beta \(TRADESIM_BETA__PORT\)"):
        sup.up()
    assert procs.spawned == []


def test_a_host_not_of_this_machine_after_a_crash_is_named_with_its_setting(sup: Supervisor, procs: FakeProcesses,
                                                                            comps: list[FakeComponent]) -> None:
    """A read-through: with a server down and its host setting then naming an address not of this machine, `up`
    (and the watchdog's restart) ended in a bare `Cannot assign requested address` from the wait for the crashed
    server's ports, before the preflight that names the setting."""
    sup.up()
    procs.kill(sup.state_file.load().components["beta"].pid)
    comps[1].host = "192.0.2.1"
    procs.unbindable_hosts.add("192.0.2.1")
    named = r"beta: cannot listen on 192\.0\.2\.1:7002 \(.+\); set TRADESIM_BETA__HOST to an address of this machine"
    with pytest.raises(UserError, match=named):  # the settings' fault: exit 2
        sup.restart("beta")
    with pytest.raises(UserError, match=named):
        sup.up()
    assert len(procs.spawned) == 2


def test_down_stops_a_server_whose_host_setting_no_longer_binds(sup: Supervisor, procs: FakeProcesses,
                                                               comps: list[FakeComponent]) -> None:
    """A read-through: the wait for the stopped servers' ports raised `Cannot assign requested address` after
    `down` had stopped them, so `down --purge` and a restore did not finish."""
    sup.up()
    comps[0].host = "192.0.2.1"
    procs.unbindable_hosts.add("192.0.2.1")
    assert sup.down() == ["beta", "alpha"]
    assert sup.state_file.load().components == {}


def test_provision_failure_starts_nothing(sup: Supervisor, procs: FakeProcesses, comps: list[FakeComponent]) -> None:
    comps[1].fail_provision = ProvisionError("beta", "mvn failed (exit 1)", "BUILD FAILURE")
    with pytest.raises(ProvisionError, match="BUILD FAILURE"):
        sup.up()
    assert procs.spawned == []


def test_unhealthy_start_names_what_was_left_running(
    sup: Supervisor, procs: FakeProcesses, comps: list[FakeComponent]
) -> None:
    comps[1].healthy = False
    with pytest.raises(StartError) as exc:
        sup.up()
    assert "beta: not healthy" in str(exc.value)
    assert "left running: alpha" in str(exc.value)


def test_dead_component_shows_down_with_log_and_up_restarts_it(sup: Supervisor, procs: FakeProcesses) -> None:
    sup.up()
    old = sup.state_file.load().components["beta"].pid
    procs.kill(old)
    rows = {r.name: r for r in sup.status()}
    assert rows["beta"].state == "down"
    assert not rows["beta"].healthy
    assert "is gone" in (rows["beta"].detail or "")
    assert rows["beta"].last_log_lines[-1] == "fake beta-server started"
    assert rows["alpha"].state == "running"
    sup.up()
    new = sup.state_file.load().components["beta"].pid
    assert new != old
    assert {r.name: r.state for r in sup.status()} == {"alpha": "running", "beta": "running"}


def test_status_counts_the_watchdogs_restarts_within_its_window(sup: Supervisor, settings: Settings) -> None:
    """A probe: the watchdog trims its list only when the component dies again, so one restart a day ago still
    showed, and `TradesimWatchdogRestarts` (restarts > 0) fired for the life of the stack."""
    import time

    from tradesim.stack.watchdog import WatchdogFile, WatchdogState

    sup.up()
    now, window = time.time(), settings.stack.watchdog_window_s
    WatchdogFile(settings.stack_dir).save(WatchdogState(restarts={
        "alpha": [now - 86_400, now - window - 1, now - window + 60], "beta": [now - 86_400]}))
    assert {r.name: r.restarts for r in sup.status()} == {"alpha": 1, "beta": 0}
    # a hand-edited file: a time that is not a number counts as none (before: a TypeError from `status`, and the
    # watchdog's every pass)
    (settings.stack_dir / "watchdog.json").write_text(
        json.dumps({"restarts": {"alpha": ["x", None, True, now - 1], "beta": "soon"}}))
    assert {r.name: r.restarts for r in sup.status()} == {"alpha": 1, "beta": 0}


def test_a_restart_moves_a_log_at_the_size_limit_aside_so_logs_stay_bounded(
        settings: Settings, procs: FakeProcesses) -> None:
    limit_mb = 0.001  # ~1 KB
    small = settings.model_copy(update={"stack": settings.stack.model_copy(update={"log_rotate_mb": limit_mb})})
    comp = FakeComponent(small, "alpha", 7001, procs)
    sup = Supervisor(small, [comp], processes=procs)
    sup.up()
    log, older = comp.log_path, comp.log_path.with_name("server.log.1")
    assert not older.exists()  # a small log: the next start appends to it
    for _ in range(3):
        procs.kill(sup.state_file.load().components["alpha"].pid)
        sup.up()
    assert log.read_text().count("fake alpha-server started") == 4
    assert not older.exists()
    log.write_text("x" * 2048)  # a run that logged past the limit
    old_run = log.read_text()
    procs.kill(sup.state_file.load().components["alpha"].pid)
    sup.up()
    assert older.read_text() == old_run  # the crashed run's log is kept beside the new one
    assert "x" not in log.read_text()
    assert log.read_text().endswith("fake alpha-server started\n")
    log.write_text("y" * 2048)
    procs.kill(sup.state_file.load().components["alpha"].pid)
    sup.up()
    assert older.read_text() == "y" * 2048  # only one older log: the one before it is gone
    assert len(list(log.parent.glob("server.log*"))) == 2


def test_reused_pid_is_reported_stale_and_never_signalled(sup: Supervisor, procs: FakeProcesses) -> None:
    sup.up()
    pid = sup.state_file.load().components["alpha"].pid
    procs.alive[pid] = 12345  # same pid, another process (different start time)
    row = next(r for r in sup.status() if r.name == "alpha")
    assert row.state == "down"
    assert "another process" in (row.detail or "")
    sup.down()
    assert pid not in procs.terminated
    assert pid in procs.alive  # the unrelated process survives


def test_down_stops_in_reverse_order_and_clears_state(sup: Supervisor, procs: FakeProcesses) -> None:
    sup.up()
    pids = [sup.state_file.load().components[n].pid for n in ("beta", "alpha")]
    assert sup.down() == ["beta", "alpha"]
    assert procs.terminated == pids
    assert sup.state_file.load().components == {}
    assert {r.state for r in sup.status()} == {"stopped"}


def test_down_says_stopped_only_of_what_it_stopped(settings: Settings, comps: list[FakeComponent],
                                                   procs: FakeProcesses) -> None:
    said: list[tuple[str, str]] = []
    sup = Supervisor(settings, list(comps), processes=procs, progress=lambda name, msg: said.append((name, msg)))
    sup.up()
    said.clear()
    sup.down()
    assert [s for s in said if s[1] == "stopped"] == [("beta", "stopped"), ("alpha", "stopped")]
    said.clear()
    assert sup.down() == []
    assert said == []  # before: every component "stopped" again, then "nothing was running"
    sup.down(purge=True)
    assert said == [("beta", "purged"), ("alpha", "purged")]


def test_down_purge_deletes_data(sup: Supervisor, comps: list[FakeComponent]) -> None:
    sup.up()
    (comps[0].dir / "data.bin").write_text("x")
    sup.down(purge=True)
    assert not comps[0].dir.exists()


def test_down_leaves_a_folder_up_never_made_alone(sup: Supervisor, comps: list[FakeComponent]) -> None:
    # a home pointed at the user's own files, whose folders happen to bear the components' names
    comps[0].dir.mkdir(parents=True)
    (comps[0].dir / "notes.txt").write_text("mine")
    (sup.settings.stack_dir / "state.json").write_text('{"mine": true}')
    assert sup.down() == []
    assert (sup.settings.stack_dir / "state.json").read_text() == '{"mine": true}'  # before: rewritten
    with pytest.raises(UserError, match="was not made by `tradesim up`"):
        sup.down(purge=True)  # before: every component's folder deleted
    assert (comps[0].dir / "notes.txt").read_text() == "mine"


def test_up_refuses_a_folder_that_holds_the_users_files(sup: Supervisor, comps: list[FakeComponent]) -> None:
    sup.settings.stack_dir.mkdir(parents=True)
    (sup.settings.stack_dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files `tradesim up` did not make \(notes.txt\)"):
        sup.up()  # before: claimed it, started every component in it, and a later purge could delete from it
    assert not comps[0].dir.exists()
    assert sorted(p.name for p in sup.settings.stack_dir.iterdir()) == [".lock", "notes.txt"]


def test_a_stack_from_before_the_marker_is_still_purged(sup: Supervisor, comps: list[FakeComponent]) -> None:
    sup.up()
    (sup.settings.stack_dir / MARKER).unlink()
    (comps[0].dir / "data.bin").write_text("x")
    sup.down(purge=True)  # its state file is tradesim's
    assert not comps[0].dir.exists()


def test_a_routed_service_starts_after_toxiproxy_when_chaos_is_on_and_every_service_after_jaeger_when_tracing(
    settings: Settings,
) -> None:
    from tradesim.stack import registry
    from tradesim.stack.api import ApiService
    from tradesim.stack.prometheus import Prometheus, StackExporter

    # both off explicitly: the environment the tests run in may turn them on (the integration stack does)
    plain = settings.model_copy(update={"chaos": settings.chaos.model_copy(update={"enabled": False}),
                                        "tracing": settings.tracing.model_copy(update={"enabled": False})})
    assert ApiService(plain).start_after() == ("kafka", "redis", "dynamodb")
    chaos = plain.model_copy(update={"chaos": plain.chaos.model_copy(update={"enabled": True})})
    assert ApiService(chaos).start_after() == ("kafka", "redis", "dynamodb", "toxiproxy")
    # the observers start last, so no server still booting is reported down
    assert StackExporter(chaos).start_after() == registry.NAMES[:registry.NAMES.index("exporter")]
    assert Prometheus(chaos).start_after() == (*StackExporter(chaos).start_after(), "exporter")
    traced = chaos.model_copy(update={"tracing": plain.tracing.model_copy(update={"enabled": True})})
    assert ApiService(traced).start_after() == ("kafka", "redis", "dynamodb", "toxiproxy", "jaeger")


def test_a_running_servers_log_past_the_limit_is_copied_aside_and_emptied_where_it_appends(tmp_path: Path) -> None:
    from tradesim.stack.supervisor import trim_log

    log = tmp_path / "server.log"
    with open(log, "ab", buffering=0) as server:  # how the supervisor hands a server its log: appending
        server.write(b"a" * 512)
        assert not trim_log(log, 1024)  # under the limit: left alone
        server.write(b"b" * 1024)
        assert trim_log(log, 1024)
        assert (tmp_path / "server.log.1").read_bytes() == b"a" * 512 + b"b" * 1024
        server.write(b"next\n")
    assert log.read_bytes() == b"next\n"  # at the new start, no hole where the old lines were
    assert not trim_log(tmp_path / "absent.log", 1)


def test_on_a_full_disk_a_log_is_emptied_without_its_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import errno
    import shutil

    from tradesim.stack.supervisor import trim_log

    def full(src: Path, dst: Path) -> None:
        dst.write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    log = tmp_path / "server.log"
    log.write_bytes(b"x" * 2048)
    monkeypatch.setattr(shutil, "copyfile", full)
    assert trim_log(log, 1024)
    assert log.stat().st_size == 0
    assert not (tmp_path / "server.log.1").exists()  # the partial copy is not kept either


def test_a_trim_never_writes_through_a_link(tmp_path: Path) -> None:
    from tradesim.stack.supervisor import trim_log

    victim, older_victim = tmp_path / "user.txt", tmp_path / "other.txt"
    victim.write_bytes(b"u" * 2048)
    older_victim.write_text("keep")
    home = tmp_path / "home"
    home.mkdir()
    (home / "server.log").symlink_to(victim)
    assert not trim_log(home / "server.log", 1024)  # before: the user's file emptied
    (home / "server.log").unlink()
    (home / "server.log").write_bytes(b"x" * 2048)
    (home / "server.log.1").symlink_to(older_victim)
    assert trim_log(home / "server.log", 1024)
    assert (victim.read_bytes(), older_victim.read_text()) == (b"u" * 2048, "keep")  # before: overwritten
    assert not (home / "server.log.1").is_symlink()
    assert (home / "server.log.1").stat().st_size == 2048


def test_the_watchdog_trims_the_logs_of_running_servers_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tradesim.settings import load_settings
    from tradesim.stack.watchdog import Watchdog

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path))
    monkeypatch.setenv("TRADESIM_STACK__LOG_ROTATE_MB", "0.001")
    dog = Watchdog(load_settings())
    big, small, stopped, unreadable = dog.supervisor.components[:4]
    for comp, size in ((big, 2048), (small, 100), (stopped, 2048), (unreadable, 2048)):
        comp.log_path.parent.mkdir(parents=True, exist_ok=True)
        comp.log_path.write_bytes(b"x" * size)
    unreadable.log_path.with_name("server.log.1").mkdir()  # a copy that fails: reported, the others go on
    dog._trim_logs({big.name, small.name, unreadable.name, dog.supervisor.components[5].name})
    sizes = [c.log_path.stat().st_size for c in (big, small, stopped, unreadable)]
    assert sizes == [0, 100, 2048, 2048]  # a stopped server's log keeps its tail where `status` points
    assert big.log_path.with_name("server.log.1").stat().st_size == 2048


def test_a_slow_build_runs_beside_the_servers_that_do_not_wait_for_it(settings: Settings,
                                                                      procs: FakeProcesses) -> None:
    """Before: every component was provisioned before any started, so the whole stack waited for a cold Jaeger
    build (minutes); now only what starts after it does."""
    built, server, user = (FakeComponent(settings, n, p, procs) for n, p in (("built", 7001), ("server", 7002),
                                                                             ("user", 7003)))
    built.builds_beside = True
    user.needs = ("built",)
    events: list[tuple[str, str]] = []
    release = threading.Event()

    def slow_build(report: Callable[[str], None]) -> None:
        assert release.wait(10), "the server never became healthy while the build ran"
        built.provisioned += 1

    def progress(name: str, msg: str) -> None:
        events.append((name, msg))
        if (name, msg) == ("server", "healthy"):
            release.set()  # the build ends only once the other server is up: proof they overlapped

    built.provision = slow_build  # type: ignore[method-assign]
    Supervisor(settings, [built, server, user], processes=procs, progress=progress).up()
    order = [e for e in events if e[1] in ("starting", "healthy")]
    assert order == [("server", "starting"), ("server", "healthy"), ("built", "starting"), ("built", "healthy"),
                     ("user", "starting"), ("user", "healthy")]
    assert built.provisioned == 1


def test_a_build_that_fails_beside_the_starts_names_it_and_what_was_left_running(
        settings: Settings, procs: FakeProcesses) -> None:
    built, server = FakeComponent(settings, "built", 7001, procs), FakeComponent(settings, "server", 7002, procs)
    built.builds_beside = True
    built.fail_provision = ProvisionError("built", "go build failed (exit 1)", "undefined: x")
    events: list[tuple[str, str]] = []
    with pytest.raises(ProvisionError) as exc:
        Supervisor(settings, [built, server], processes=procs, progress=lambda n, m: events.append((n, m))).up()
    assert "go build failed" in str(exc.value)
    assert ("built", "failed") in events
    assert procs.spawned in ([], [["server-server"]])  # the build may fail before or after the server spawned
    if procs.spawned:
        assert "left running: server" in str(exc.value)


def test_a_build_beside_an_up_that_fails_is_stopped_with_it(settings: Settings, procs: FakeProcesses) -> None:
    """A review: the build ran on (a `go build` child of a CLI that had exited) after a server failed its start."""
    import subprocess

    from tradesim.stack.tools import run_tool

    built, server = FakeComponent(settings, "built", 7001, procs), FakeComponent(settings, "server", 7002, procs)
    built.builds_beside = True
    server.healthy = False
    pids: list[int] = []
    real_popen = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[str]:
        proc = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        pids.append(proc.pid)
        return proc  # type: ignore[no-any-return]

    def slow_build(report: Callable[[str], None]) -> None:
        run_tool("built", ["sleep", "600"], "a long build")

    built.provision = slow_build  # type: ignore[method-assign]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", popen)
        with pytest.raises(StartError, match="server: not healthy"):
            Supervisor(settings, [built, server], processes=procs).up()
    assert len(pids) == 1
    with pytest.raises(ChildProcessError):  # killed and reaped: no such child any more
        os.waitpid(pids[0], os.WNOHANG)


def test_two_provisions_of_one_component_take_turns_on_the_shared_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: two stacks sharing the artifact cache (two `up`s, `provision` beside an `up`) staged OpenSearch's
    jars into one folder at once, and one failed ("Failed to copy full contents")."""
    from tradesim.stack.kafka import Kafka

    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    inside: list[int] = []
    seen_inside: list[int] = []
    first_in, release, waiting = threading.Event(), threading.Event(), threading.Event()

    def provision(self: Kafka, report: object) -> None:
        inside.append(1)
        seen_inside.append(len(inside))
        if not first_in.is_set():
            first_in.set()
            release.wait(10)
        inside.pop()

    monkeypatch.setattr(Kafka, "provision", provision)
    reports: list[str] = []
    first = threading.Thread(target=Kafka(settings).provision_locked, args=(lambda _msg: None,))
    first.start()
    assert first_in.wait(10)
    second = threading.Thread(target=Kafka(settings).provision_locked,
                              args=(lambda msg: (reports.append(msg), waiting.set()),))
    second.start()
    assert waiting.wait(10)
    assert seen_inside == [1]  # the second waits outside
    release.set()
    first.join(10)
    second.join(10)
    assert seen_inside == [1, 1]  # then provisions (a no-op for a real component), alone
    assert reports[0].startswith("waiting for another provisioning of kafka to finish")


def test_up_replacing_a_hung_component_waits_for_its_ports_to_free(
        settings: Settings, comps: list[FakeComponent]) -> None:
    """A probe: `up` on a SIGSTOP'd server killed it, then found its port still held (the kernel had not released
    it yet) and left the component stopped, with no watchdog to bring it back."""

    class SlowRelease(FakeProcesses):
        held: dict[int, int] = {}  # port -> checks it still answers "in use"

        def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
            super().terminate(handle, grace_s)
            self.held[7002] = 3
            beta.healthy = True  # the next process answers

        def port_in_use(self, host: str, port: int) -> bool:
            if self.held.get(port, 0) > 0:
                self.held[port] -= 1
                return True
            return super().port_in_use(host, port)

    procs = SlowRelease()
    alpha, beta = (FakeComponent(settings, c.name, c.port, procs) for c in comps)
    sup = Supervisor(settings, [alpha, beta], processes=procs)
    sup.up()
    hung = sup.state_file.load().components["beta"].pid
    beta.healthy = False  # alive, not answering
    rows = sup.up()
    assert procs.terminated == [hung]
    assert {r.name: r.state for r in rows} == {"alpha": "running", "beta": "running"}
    assert sup.state_file.load().components["beta"].pid != hung


def test_up_keeps_the_record_of_a_hung_server_that_survives_sigkill(
        settings: Settings, comps: list[FakeComponent]) -> None:
    """A review: such a server's record was deleted anyway, so `down` no longer knew it, and `up` failed on "port
    in use by another process" (it was ours) without its pid. Now `up` fails naming the pid and keeps the record."""

    class Unkillable(FakeProcesses):
        def terminate(self, handle: ProcessHandle, grace_s: float) -> None:
            self.terminated.append(handle.pid)  # stuck in the kernel: SIGKILL does not end it

        def port_in_use(self, host: str, port: int) -> bool:
            return (port == beta.port and any(pid in self.alive for pid in stuck)) or super().port_in_use(host, port)

    stuck: list[int] = []
    procs = Unkillable()
    alpha, beta = (FakeComponent(settings, c.name, c.port, procs) for c in comps)
    sup = Supervisor(settings, [alpha, beta], processes=procs)
    sup.up()
    hung = sup.state_file.load().components["beta"].pid
    stuck.append(hung)  # holding its port
    beta.healthy = False  # alive, not answering
    with pytest.raises(StartError, match=rf"^beta: pid {hung} did not stop .*\(nothing was started\)$"):
        sup.up()
    assert procs.terminated == [hung]
    assert sup.state_file.load().components["beta"].pid == hung  # `status` and `down` still know it
    assert {r.name: r.state for r in sup.status()} == {"alpha": "running", "beta": "unhealthy"}


def test_status_says_when_components_run_without_their_watchdog(sup: Supervisor, settings: Settings) -> None:
    """A probe: after a kill -9 of the watchdog, nothing restarted what died, and neither `status` nor
    `status --json` said so."""
    from tradesim.stack.supervisor import watchdog_state

    # the setting as the user has it, whatever the environment says (the integration tests turn it off)
    on, off = (settings.model_copy(update={"stack": settings.stack.model_copy(update={"watchdog": v})})
               for v in (True, False))
    assert watchdog_state(on, sup.status()) == "idle"  # nothing runs: nothing to watch
    sup.up()  # components run; no watchdog was started (a killed one looks the same)
    assert watchdog_state(on, sup.status()) == "not running"
    assert watchdog_state(off, sup.status()) == "off"


def test_a_watchdog_for_the_logs_only_trims_and_neither_restarts_nor_probes(
        settings: Settings, procs: FakeProcesses, comps: list[FakeComponent], sup: Supervisor) -> None:
    """`stack.watchdog` off: `up` still leaves a watchdog, so a long run's logs stay bounded; it must not bring
    back what a test (or the user) stopped, nor probe the servers every second."""
    from tradesim.stack.watchdog import Watchdog

    small = settings.model_copy(update={"stack": settings.stack.model_copy(update={"log_rotate_mb": 0.001})})
    sup.up()
    alpha, beta = comps
    procs.kill(sup.state_file.load().components["beta"].pid)
    for comp in comps:
        comp.log_path.write_bytes(b"x" * 2048)
    dog = Watchdog(small, processes=procs, restarting=False)
    dog.supervisor.components = list(comps)
    alpha.answers_after = 5  # a probe would use one up

    assert dog.check() == []
    assert len(procs.spawned) == 2  # beta not restarted
    assert alpha.answers_after == 5  # nobody's health asked
    assert (alpha.log_path.stat().st_size, beta.log_path.stat().st_size) == (0, 2048)  # only the running one's
    assert alpha.log_path.with_name("server.log.1").stat().st_size == 2048


def test_the_watchdog_started_is_of_the_kind_asked_and_replaces_one_of_the_other(
        settings: Settings, procs: FakeProcesses) -> None:
    from tradesim.stack import watchdog

    logs_only = watchdog.start(settings, procs, restarting=False)
    assert procs.spawned[-1][-2:] == ["tradesim.stack.watchdog", watchdog.LOGS_ONLY]
    assert watchdog.start(settings, procs, restarting=False) == logs_only  # already running: left alone
    restarting = watchdog.start(settings, procs)
    assert restarting != logs_only
    assert procs.terminated == [logs_only.pid]
    assert procs.spawned[-1][-1] == "tradesim.stack.watchdog"
    assert watchdog.WatchdogFile(settings.stack_dir).load().restarting
    assert watchdog.start(settings, procs, restarting=False) != restarting  # `up` with it turned off
    assert procs.terminated == [logs_only.pid, restarting.pid]
    assert len(procs.spawned) == 3


def test_a_watchdog_running_with_other_settings_is_replaced(settings: Settings, procs: FakeProcesses) -> None:
    from tradesim.stack import watchdog

    first = watchdog.start(settings, procs)
    assert watchdog.start(settings.model_copy(), procs) == first  # equal settings: left alone
    small = settings.model_copy(update={"stack": settings.stack.model_copy(update={"log_rotate_mb": 0.5})})
    second = watchdog.start(small, procs)
    assert second != first
    assert procs.terminated == [first.pid]
    assert watchdog.stop(small, procs)
    assert not watchdog.stop(small, procs)


@pytest.mark.parametrize(("setting", "kind", "expected"), [
    (True, "restarting", "running"), (True, "logs-only", "not running"), (True, None, "not running"),
    (False, "logs-only", "off"), (False, None, "off"),
    (False, "restarting", "running"),  # turned off since: it still restarts until the next `up` replaces it
])
def test_status_says_whether_something_restarts_what_dies(
        settings: Settings, procs: FakeProcesses, monkeypatch: pytest.MonkeyPatch,
        setting: bool, kind: str | None, expected: str) -> None:
    from tradesim.stack import watchdog
    from tradesim.stack.process import OsProcessTable
    from tradesim.stack.supervisor import ComponentStatus, watchdog_state

    monkeypatch.setattr(OsProcessTable, "is_alive", lambda self, handle: procs.is_alive(handle))
    if kind is not None:
        watchdog.start(settings, procs, restarting=kind == "restarting")
    ours = settings.model_copy(update={"stack": settings.stack.model_copy(update={"watchdog": setting})})
    assert watchdog_state(ours, [ComponentStatus("redis", "running", True)]) == expected


def test_stopping_no_watchdog_writes_nothing(settings: Settings) -> None:
    """Before: `down` on a fresh home made the stack folder for the watchdog's lock, and `up` then refused it."""
    from tradesim.stack import watchdog

    assert not watchdog.stop(settings)
    assert not settings.stack_dir.exists()


def test_a_replaced_watchdog_hands_on_its_counts(settings: Settings, procs: FakeProcesses) -> None:
    from tradesim.stack import watchdog

    watchdog.start(settings, procs)
    wd = watchdog.WatchdogFile(settings.stack_dir)
    wd.save(dataclasses.replace(wd.load(), restarts={"redis": [1.0]}, gave_up={"kafka": "died 6 times"}))
    watchdog.start(settings, procs, restarting=False)
    after = wd.load()
    assert (after.restarting, after.restarts, after.gave_up) == (False, {"redis": [1.0]}, {"kafka": "died 6 times"})


def test_a_new_watchdogs_first_save_keeps_the_pid_up_saved_for_it(
        settings: Settings, procs: FakeProcesses, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the new watchdog's first pass could read watchdog.json before `up` saved its pid there and write
    it back after, with the pid it replaced (here none): `down` then found no watchdog to stop and left it on."""
    from tradesim.stack import watchdog

    dog = watchdog.Watchdog(settings, procs)
    loaded, up_saved = threading.Event(), threading.Event()
    real_load, real_save, real_spawn = watchdog.WatchdogFile.load, watchdog.WatchdogFile.save, procs.spawn
    first_pass = threading.Thread(target=dog._save, args=(watchdog.WatchdogState(restarts={"redis": [1.0]}),))

    def load(self: watchdog.WatchdogFile) -> watchdog.WatchdogState:
        state = real_load(self)
        if threading.current_thread() is first_pass:  # the new watchdog's pass: `up` saves while it runs
            loaded.set()
            up_saved.wait(5)
        return state

    def save(self: watchdog.WatchdogFile, state: watchdog.WatchdogState) -> None:
        real_save(self, state)
        if threading.current_thread() is not first_pass:
            up_saved.set()

    def spawn(*args: Any) -> ProcessHandle:
        handle = real_spawn(*args)
        first_pass.start()  # the watchdog runs its first pass at once
        loaded.wait(1)  # (it cannot read before its pid is saved: the wait times out)
        return handle

    monkeypatch.setattr(watchdog.WatchdogFile, "load", load)
    monkeypatch.setattr(watchdog.WatchdogFile, "save", save)
    monkeypatch.setattr(procs, "spawn", spawn)
    handle = watchdog.start(settings, procs)
    first_pass.join(10)
    after = real_load(watchdog.WatchdogFile(settings.stack_dir))
    assert after.handle == handle
    assert after.restarts == {"redis": [1.0]}  # and its counts saved
    assert watchdog.stop(settings, procs)


@pytest.mark.parametrize(("setting", "healthy", "found", "alive", "expected"), [
    (True, True, None, True, "start restarting"),
    (True, False, "running", True, "keep"),  # a failed `up` keeps the restarting one it found
    (True, False, "not running", True, "start logs-only"),
    (False, True, "off", True, "start logs-only"),
    (False, False, "off", True, "start logs-only"),
    (False, True, "running", False, "stop"),  # nothing of ours runs: nothing to restart or trim
    (True, False, "not running", False, "stop"),
])
def test_up_leaves_the_watchdog_that_its_outcome_and_the_setting_ask_for(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, setting: bool, healthy: bool, found: str | None,
        alive: bool, expected: str) -> None:
    from tradesim.cli import stack as cli_stack
    from tradesim.stack import supervisor, watchdog
    from tradesim.stack.process import ProcessHandle

    calls: list[str] = []
    monkeypatch.setattr(watchdog, "start", lambda s, restarting=True: calls.append(
        "start " + ("restarting" if restarting else "logs-only")) or ProcessHandle(1, 1))
    monkeypatch.setattr(watchdog, "stop", lambda s: calls.append("stop") or True)
    monkeypatch.setattr(supervisor, "watchdog_state", lambda s, rows: found)
    monkeypatch.setattr(Supervisor, "alive", lambda self: {"redis"} if alive else set())
    ours = settings.model_copy(update={"stack": settings.stack.model_copy(update={"watchdog": setting})})
    cli_stack._leave_watchdog(ours, healthy=healthy)
    assert calls == ([] if expected == "keep" else [expected])
