"""`tradesim doctor` names every tool the stack needs, with the fix for a missing one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tradesim.settings import Settings
from tradesim.stack import doctor
from tradesim.stack.jaeger import go_too_old


def _checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: set[str], root: bool,
            chaos: bool, tracing: bool = False) -> dict[str, doctor.Check]:
    real = shutil.which
    monkeypatch.setattr(doctor.shutil, "which",
                        lambda name, *a, **kw: None if name in missing else real(name, *a, **kw))
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0 if root else 1000)
    settings = Settings(home=tmp_path, chaos={"enabled": chaos}, tracing={"enabled": tracing})  # type: ignore[arg-type]
    return {c.name: c for c in doctor.run_checks(settings, [])}


def test_missing_prometheus_and_go_are_named_with_their_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = _checks(tmp_path, monkeypatch, {"prometheus", "promtool", "go"}, root=False, chaos=True)
    assert (checks["prometheus"].ok, checks["prometheus"].fix) == (False, "sudo apt-get install -y prometheus")
    assert (checks["promtool"].ok, checks["promtool"].fix) == (False, "sudo apt-get install -y prometheus")
    assert not checks["go"].ok
    assert "golang" in checks["go"].fix


def test_root_gets_the_packages_from_up_and_go_is_needed_only_for_chaos(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    checks = _checks(tmp_path, monkeypatch, {"prometheus", "promtool", "go"}, root=True, chaos=False)
    assert checks["prometheus"].ok
    assert "installs prometheus" in checks["prometheus"].detail
    assert checks["go"].ok
    assert "only with chaos.enabled or tracing.enabled" in checks["go"].detail


def test_go_is_needed_to_build_jaeger_when_tracing_is_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = _checks(tmp_path, monkeypatch, {"go"}, root=True, chaos=False, tracing=True)
    assert not checks["go"].ok
    assert "Jaeger" in checks["go"].fix


def test_a_go_too_old_for_jaeger_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "go_version", lambda _go: (1, 19, 8))  # Debian 12's golang
    checks = _checks(tmp_path, monkeypatch, set(), root=True, chaos=False, tracing=True)
    assert not checks["go"].ok
    assert "Go 1.19.8 cannot build Jaeger" in checks["go"].detail
    assert go_too_old((1, 26, 8)) is None
    assert go_too_old(None) is None  # unknown: the build itself will say


def test_a_jre_without_javac_is_named_since_the_bars_job_is_compiled(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_java = Path(shutil.which("java") or "java").resolve()
    for kind in ("jre", "jdk"):
        home = tmp_path / kind
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "java").write_text(f'#!/bin/sh\nexec {real_java} "$@"\n')
        (home / "bin" / "java").chmod(0o755)
    (tmp_path / "jdk" / "bin" / "javac").write_text("")  # present beside java: all the check looks for
    monkeypatch.setenv("TRADESIM_STACK__JAVA_HOME", str(tmp_path / "jre"))
    checks = _checks(tmp_path, monkeypatch, set(), root=True, chaos=False)
    assert checks["java"].ok
    assert not checks["javac"].ok
    assert "jdk" in checks["javac"].fix
    monkeypatch.setenv("TRADESIM_STACK__JAVA_HOME", str(tmp_path / "jdk"))
    assert _checks(tmp_path, monkeypatch, set(), root=True, chaos=False)["javac"].ok


def test_a_port_inside_the_client_port_range_is_named_with_its_setting(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: chaos ports set to 36379/38000/39092 were taken by the services' own outgoing connections
    (a TCP self-connect on 39092), and every `up` failed on Toxiproxy's bind; doctor said "free"."""
    from tradesim.stack.toxiproxy import ToxiproxyServer
    from tradesim.testing.fakes import FakeProcesses

    monkeypatch.setattr(doctor, "client_port_range", lambda: (32768, 60999))
    monkeypatch.setattr(doctor, "reserved_ports", lambda: {38000})
    settings = Settings(home=tmp_path, chaos={"enabled": True, "kafka_port": 39092,  # type: ignore[arg-type]
                                              "dynamodb_port": 38000})
    checks = {c.name: c for c in doctor.run_checks(settings, [ToxiproxyServer(settings)], FakeProcesses())}
    assert not checks["port 39092"].ok
    assert "client ports (32768-60999)" in checks["port 39092"].detail
    assert "TRADESIM_CHAOS__KAFKA_PORT below 32768" in checks["port 39092"].fix
    assert checks["port 38000"].ok  # reserved: no client takes it
    assert checks["port 16379"].ok  # the default, below the range


def test_the_kernels_port_ranges_are_read_and_an_unreadable_one_is_none(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("32768\t60999\n")
    (tmp_path / "reserved").write_text("8000-8002,9000\n")
    assert doctor.client_port_range(tmp_path / "range") == (32768, 60999)
    assert doctor.reserved_ports(tmp_path / "reserved") == {8000, 8001, 8002, 9000}
    assert doctor.client_port_range(tmp_path / "missing") is None
    assert doctor.reserved_ports(tmp_path / "missing") == set()


def test_ports_two_settings_share_or_an_off_component_holds_are_told_as_up_sees_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `api.port` set to Flink's REST port passed doctor (and `up`'s check) with both ports "free", and
    Jaeger's ports were checked with tracing off, so another program on 8888 failed doctor for nothing."""
    from tradesim.stack.api import ApiService
    from tradesim.stack.flink import Flink
    from tradesim.stack.jaeger import Jaeger
    from tradesim.testing.fakes import FakeProcesses

    monkeypatch.setattr(doctor, "client_port_range", lambda: None)
    settings = Settings(home=tmp_path, api={"port": 18081}, flink={"rest_port": 18081},  # type: ignore[arg-type]
                        tracing={"enabled": False})  # (the integration tests turn it on for the whole run)
    comps = [ApiService(settings), Flink(settings), Jaeger(settings)]
    checks = doctor.run_checks(settings, comps, FakeProcesses())
    (clash,) = [c for c in checks if c.name == "ports"]
    assert not clash.ok
    assert "127.0.0.1:18081 is given to api (TRADESIM_API__PORT) and flink (TRADESIM_FLINK__REST_PORT)" in (
        clash.detail)
    assert not any(str(settings.tracing.metrics_port) in c.name for c in checks)  # tracing is off


def test_an_address_not_of_this_machine_is_named_with_its_setting(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `kafka.host` 192.0.2.1 (or a name that does not resolve) ended doctor with `error: Cannot assign
    requested address`, no table, no setting named."""
    from tradesim.stack.kafka import Kafka

    monkeypatch.setattr(doctor, "client_port_range", lambda: None)
    settings = Settings(home=tmp_path, kafka={"host": "192.0.2.1"})  # type: ignore[arg-type]
    checks = {c.name: c for c in doctor.run_checks(settings, [Kafka(settings)])}  # the real bind
    port = checks[f"port {settings.kafka.port}"]
    assert not port.ok
    assert "kafka: cannot listen on 192.0.2.1" in port.detail
    assert port.fix == "set TRADESIM_KAFKA__HOST to an address of this machine"
