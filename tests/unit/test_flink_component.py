"""The Flink component's generated cluster config and process command, without starting anything."""

from __future__ import annotations

import json

import pytest

from tradesim.settings import Settings
from tradesim.stack.flink import Flink


def test_config_binds_loopback_on_the_configured_ports_and_uses_the_venv_python(settings: Settings) -> None:
    s = settings.model_copy(update={"flink": settings.flink.model_copy(update={"rest_port": 18_181,
                                                                             "rpc_port": 16_161})})
    flink = Flink(s)
    cfg = flink.flink_config()
    assert (cfg["rest.port"], cfg["jobmanager.rpc.port"]) == (18_181, 16_161)
    for key in ("rest.address", "rest.bind-address", "jobmanager.bind-host", "taskmanager.bind-host",
                "taskmanager.host", "jobmanager.rpc.address"):
        assert cfg[key] == "127.0.0.1", key
    assert cfg["python.executable"] == cfg["python.client.executable"] == str(flink.python)
    assert "-XX:TieredStopAtLevel=1" in str(cfg["env.java.opts.client"])  # the short-lived client JVM only,
    assert "env.java.opts.jobmanager" not in cfg  # not the cluster's
    assert "env.java.opts.taskmanager" not in cfg
    assert str(cfg["execution.checkpointing.dir"]).startswith(f"file://{flink.dir}")
    assert [p.port for p in flink.ports()] == [18_181, 16_161]
    assert flink.address() == "http://127.0.0.1:18181"


def test_one_supervised_process_runs_both_daemons(settings: Settings) -> None:
    flink = Flink(settings)
    flink.venv.joinpath("lib/python3.11/site-packages/pyflink").mkdir(parents=True)
    argv = flink.argv()
    assert argv[1:3] == ["-m", "tradesim.stack.flink_proc"]
    assert argv[3] == str(flink.flink_home)
    assert argv[5] == str(flink.dir / "tmp" / "taskmanager")  # the TaskManager's own scratch, emptied per start


def test_external_cluster_is_not_managed(settings: Settings) -> None:
    s = settings.model_copy(update={"flink": settings.flink.model_copy(update={"rest_url": "http://flink:8081/"})})
    assert Flink(s).external
    assert Flink(s).address() == "http://flink:8081"


def test_a_start_clears_the_scratch_dead_jvms_left_and_first_stops_a_jvm_of_ours_left_running(
        settings: Settings) -> None:
    import subprocess
    import sys

    flink = Flink(settings)
    (flink.venv / "lib/python3.11/site-packages/pyflink/conf").mkdir(parents=True)  # the wheel's folder, empty
    (flink.flink_home / "conf" / "config.yaml").write_text("{}\n")
    scratch = flink.dir / "tmp"
    (scratch / "jm_0123" / "blobStore").mkdir(parents=True)  # what a JobManager killed -9 leaves
    (scratch / "flink-rpc-akka0123.jar").write_bytes(b"jar")
    flink.configure()
    assert list(scratch.iterdir()) == []
    (scratch / "tm_left").mkdir()
    # a TaskManager whose flink_proc was killed -9: its entry point, started with the stack's config folder
    (flink.dir / "pids").mkdir(exist_ok=True)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)",
             "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"]
    stray = subprocess.Popen([*sleep, "--configDir", str(flink.conf_dir)])
    # pids reused since: another stack's TaskManager (a folder whose path holds ours), anything else
    others = [subprocess.Popen([*sleep, "--configDir", f"/other{flink.conf_dir}"]),
              subprocess.Popen([*sleep[:3], "java", str(flink.conf_dir)])]
    try:
        pids = [p.pid for p in others] + [stray.pid]
        (flink.dir / "pids" / "flink--taskexecutor.pid").write_text("\n".join(map(str, pids)) + "\n")
        flink.configure()
        assert stray.wait(timeout=10) == -9  # it would have joined the new cluster
        assert [p.poll() for p in others] == [None, None]
        assert list(scratch.iterdir()) == []
    finally:
        for proc in (stray, *others):
            proc.kill()
            proc.wait()


def test_a_venv_whose_completion_mark_is_torn_is_built_again_not_a_traceback(settings: Settings,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the PyFlink venv's mark was read unguarded (and written in place), so a mark left empty (a full disk
    as it was written, a kill) failed every later `up` and `jobs submit` with a JSONDecodeError traceback."""
    from tradesim.stack import flink as flink_module

    flink = Flink(settings)
    flink.venv.mkdir(parents=True)
    (flink.venv / ".tradesim-complete").write_text("")
    ran: list[str] = []

    def run_tool(_name: str, _argv: list[str], what: str, **_kw: object) -> str:
        ran.append(what)
        if what == "python -m venv":
            flink.venv.mkdir(parents=True)
        return ""

    monkeypatch.setattr(flink_module, "run_tool", run_tool)
    flink._provision_venv(lambda _msg: None)
    assert ran[:2] == ["python -m venv", "pip install apache-flink"]  # its state unknown: built from scratch
    assert json.loads((flink.venv / ".tradesim-complete").read_text()) == flink._venv_marker()
    assert [p.name for p in flink.venv.iterdir()] == [".tradesim-complete"]  # (the mark written whole, in one step)
