"""The Flink component's generated cluster config and process command, without starting anything."""

from __future__ import annotations

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


def test_external_cluster_is_not_managed(settings: Settings) -> None:
    s = settings.model_copy(update={"flink": settings.flink.model_copy(update={"rest_url": "http://flink:8081/"})})
    assert Flink(s).external
    assert Flink(s).address() == "http://flink:8081"
