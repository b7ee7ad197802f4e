"""The jobs' entry point on Managed Service for Apache Flink: its runtime properties become the job's arguments
and TRADESIM_* settings; and the Kafka client properties every client starts from."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tradesim.infra.settings_env import cloud_settings, env_vars
from tradesim.jobs.managed import ENV_GROUP, JOB_GROUP, adopt, prepare, property_groups
from tradesim.jobs.managed import carried as carried_settings
from tradesim.settings import load_settings
from tradesim.stack.jobs import JOBS, job_args


def _write(path: Path, groups: dict[str, dict[str, str]]) -> Path:
    path.write_text(json.dumps([{"PropertyGroupId": k, "PropertyMap": v} for k, v in groups.items()]))
    return path


@pytest.fixture
def bare_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A process environment without TRADESIM_* variables (a Managed Flink worker's), restored afterwards."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRADESIM_")}
    monkeypatch.setattr(os, "environ", environ)
    return environ


def test_the_properties_become_the_jobs_arguments_and_settings(tmp_path: Path, bare_environ: dict[str, str]) -> None:
    settings = cloud_settings({"kafka": {"bootstrap_servers": "b-1.example:9094", "security_protocol": "SSL"}})
    args = job_args(JOBS["execution"], settings)
    path = _write(tmp_path / "application_properties.json", {
        JOB_GROUP: {"module": "tradesim.jobs.execution", "args": json.dumps(args)},
        ENV_GROUP: {"TRADESIM_KAFKA__SECURITY_PROTOCOL": "SSL", "TRADESIM_REDIS__URL": "rediss://cloud:6390/0"},
    })
    module, argv = prepare(property_groups(path))
    assert module == "tradesim.jobs.execution"
    assert argv[argv.index("--bootstrap") + 1] == "b-1.example:9094"
    assert argv[argv.index("--kafka-security-protocol") + 1] == "SSL"
    assert load_settings().kafka.security_protocol == "SSL"
    assert load_settings().redis.url == "rediss://cloud:6390/0"


def test_operators_carry_the_settings_to_a_worker_that_has_none(bare_environ: dict[str, str]) -> None:
    bare_environ |= {"TRADESIM_REDIS__URL": "rediss://cloud:6390/0", "TRADESIM_API__ADMIN_KEY": "secret"}
    carried = carried_settings()
    assert carried == {"TRADESIM_REDIS__URL": "rediss://cloud:6390/0"}  # no secret goes into the job graph
    bare_environ.clear()
    adopt(carried)
    assert load_settings().redis.url == "rediss://cloud:6390/0"


def test_a_worker_the_stack_started_keeps_its_own_settings(bare_environ: dict[str, str]) -> None:
    bare_environ["TRADESIM_REDIS__PORT"] = "16379"
    adopt({"TRADESIM_REDIS__URL": "rediss://elsewhere:6390/0"})
    assert "TRADESIM_REDIS__URL" not in bare_environ


@pytest.mark.parametrize(("groups", "message"), [
    ({JOB_GROUP: {"module": "m", "args": "[]"}, ENV_GROUP: {"PATH": "/x"}}, "not a TRADESIM_* setting"),
    ({JOB_GROUP: {"module": "m", "args": '{"bootstrap": "x"}'}}, "JSON list of strings"),
])
def test_properties_that_are_not_ours_are_refused(groups: dict[str, dict[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        prepare(groups)


def test_cloud_settings_ignore_this_machines_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_CHAOS__ENABLED", "true")
    monkeypatch.setenv("TRADESIM_KAFKA__BOOTSTRAP_SERVERS", "local:9092")
    values = {"kafka": {"security_protocol": "SSL"}, "dynamodb": {"use_aws": True}, "scenarios_dir": "/app/scenarios"}
    settings = cloud_settings(values)
    assert settings.chaos.enabled is False
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert env_vars(values) == {"TRADESIM_KAFKA__SECURITY_PROTOCOL": "SSL", "TRADESIM_DYNAMODB__USE_AWS": "true",
                                "TRADESIM_SCENARIOS_DIR": "/app/scenarios"}


def test_a_misspelt_setting_fails_the_synthesis() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="bootstrap_server"):
        env_vars({"kafka": {"bootstrap_server": "x:1"}})


def test_every_kafka_client_starts_from_the_security_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__SECURITY_PROTOCOL", "SSL")
    kafka = load_settings().kafka
    assert kafka.connection == {"bootstrap.servers": kafka.bootstrap, "security.protocol": "SSL"}
    args = job_args(JOBS["bars"], load_settings())
    assert args[args.index("--kafka-security-protocol") + 1] == "SSL"
