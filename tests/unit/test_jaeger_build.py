"""Jaeger's build command: the unoptimized build (the test suite's) lands in a folder of its own with the compiler's
optimizations off, so it never stands in for the optimized binary a user's `up` builds. A stub `go` on PATH records
what it was asked to run (building Jaeger for real takes minutes; the integration tests' stack does that)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tradesim.settings import Settings
from tradesim.stack.jaeger import Jaeger
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.fakes import FakeProcesses
from tradesim.testing.foreign import foreign_server
from tradesim.testing.net import free_port

STUB = """#!/bin/sh
echo "$@" >> "{log}"
case "$1" in
  version) echo "go version go1.26.0 linux/amd64" ;;
  build) while [ $# -gt 0 ]; do [ "$1" = "-o" ] && : > "$2"; shift; done ;;
esac
"""


@pytest.mark.parametrize(("optimized", "folder", "gcflags"), [(True, "v1.76.0", False),
                                                              (False, "v1.76.0-unoptimized", True)])
def test_the_build_flags_and_folder_follow_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       optimized: bool, folder: str, gcflags: bool) -> None:
    log = tmp_path / "go.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(STUB.format(log=log))
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                        tracing={"enabled": True, "version": "v1.76.0", "optimized_build": optimized})
    jaeger = Jaeger(settings)
    jaeger.provision(lambda _msg: None)
    assert jaeger.binary == tmp_path / "cache" / "jaeger" / folder / "jaeger"
    assert jaeger.binary.exists()
    (build,) = [line for line in log.read_text().splitlines() if line.startswith("build")]
    assert ("-gcflags=all=-N -l" in build) is gcflags


def test_tracing_off_leaves_jaeger_stopped_even_with_an_external_collector_set(tmp_path: Path) -> None:
    """`otlp_url` left in the settings while tracing is off: Jaeger is not asked for, so `status` and `up` must not
    require an external Jaeger to answer (it was probed at the local query port, and `up` failed on it)."""
    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                        tracing={"enabled": False, "otlp_url": f"http://127.0.0.1:{free_port()}",
                                 "query_port": free_port()})
    jaeger = Jaeger(settings)
    sup = Supervisor(settings, [jaeger], processes=FakeProcesses())
    (row,) = sup.status()
    assert (row.state, row.healthy) == ("stopped", True)
    (up,) = sup.up()
    assert (up.state, up.healthy) == ("stopped", True)


def test_an_external_collector_without_a_query_api_is_healthy_when_it_answers(tmp_path: Path) -> None:
    """`otlp_url` alone (any OpenTelemetry collector, no Jaeger query API named): `up` asked the local query port,
    where nothing runs, and failed. The collector is what there is to reach; its receiver refuses a GET (405)."""
    local_query = {"query_port": free_port()}
    with foreign_server(405, b"method not allowed", "text/plain") as collector:
        settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                            tracing={"enabled": True, "otlp_url": collector, **local_query})
        jaeger = Jaeger(settings)
        (up,) = Supervisor(settings, [jaeger], processes=FakeProcesses()).up()
        assert (up.state, up.healthy, up.address) == ("external", True, f"{collector}/v1/traces")
    gone = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                    tracing={"enabled": True, "otlp_url": f"http://127.0.0.1:{free_port()}", **local_query})
    (row,) = Supervisor(gone, [Jaeger(gone)], processes=FakeProcesses()).status()
    assert (row.state, row.healthy) == ("external", False)
    assert "OTLP collector" in (row.detail or "")
