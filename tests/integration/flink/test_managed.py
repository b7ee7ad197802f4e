"""The jobs jar as Amazon Managed Service for Apache Flink starts it: no program arguments, its Main-Class reads the
job's class and arguments from the runtime properties file (the groups tradesim/infra writes) and runs that job."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.integration.flink.conftest import BarsJob, make_tick, records
from tradesim.adapters.flink.client import submit_jar
from tradesim.adapters.kafka.client import TopicSpec, ensure_topics
from tradesim.domain.events import Bar, decode
from tradesim.infra.artifact import job_pins, vendored_deps
from tradesim.jobs.managed import JOB_GROUP
from tradesim.settings import Settings
from tradesim.stack.flink import JOBS_JAR_MAIN, Flink
from tradesim.stack.jobs import JOBS, job_args
from tradesim.stack.tools import require_java

pytestmark = pytest.mark.integration
OOO_MS = 2000  # the bars job's default bounded out-of-orderness


@pytest.fixture
def flink(settings: Settings, stack_components: list[str]) -> Flink:
    if "flink" not in stack_components:
        pytest.skip("needs flink in the stack (--stack-only kafka,flink)")
    return Flink(settings)


def _properties(path: Path, group: dict[str, str]) -> Path:
    path.write_text(json.dumps([{"PropertyGroupId": "kinesis.analytics.flink.run.options", "PropertyMap": {}},
                                {"PropertyGroupId": JOB_GROUP, "PropertyMap": group}]))
    return path


def test_the_jars_main_class_runs_the_job_its_properties_name(flink: Flink, settings: Settings,
                                                              tmp_path: Path) -> None:
    with zipfile.ZipFile(flink.jobs_jar) as jar:
        assert f"Main-Class: {JOBS_JAR_MAIN}" in jar.read("META-INF/MANIFEST.MF").decode()
    run = uuid.uuid4().hex[:8]
    ticks, bars, dead = f"it_mticks_{run}", f"it_mbars_{run}", f"it_mdead_{run}"
    ensure_topics(settings.kafka, [TopicSpec(ticks, 1, {}), TopicSpec(bars, 1, {}), TopicSpec(dead, 1, {})])
    spec = JOBS["bars"]
    assert spec.main_class
    args = job_args(spec, settings, {"source-topic": ticks, "bars-topic": bars, "dead-letter-topic": dead,
                                     "group-id": f"it-mbars-{run}", "job-name": f"tradesim-bars-managed-{run}"})
    properties = _properties(tmp_path / "application_properties.json",
                             {"class": spec.main_class, "args": json.dumps(args)})
    # no class named: the jar's manifest says which, as on the service
    job_id = submit_jar(flink.flink_bin, settings.flink.client_rest_url, flink.jobs_jar, None,
                        ["--properties", str(properties)], env=flink.client_env())
    rest = flink.rest()
    try:
        deadline = time.monotonic() + 120
        while (detail := rest.job(job_id))["state"] != "RUNNING" or any(
                v["status"] != "RUNNING" for v in detail["vertices"]):
            assert time.monotonic() < deadline, f"job {job_id} not running after 120 s: {detail['state']}"
            time.sleep(0.5)
        assert detail["name"] == f"tradesim-bars-managed-{run}"  # the arguments came from the properties
        job = BarsJob(settings, job_id, ticks, bars, dead, rest, 0)
        b0 = job.take_minute()
        sym = "MGD" + uuid.uuid4().hex[:4].upper()
        start = job.end_offsets(bars)
        job.produce(records([make_tick(sym, 1, b0 + 100, "10.00", 5), make_tick(sym, 2, b0 + 400, "10.50", 3),
                             make_tick(sym, 3, b0 + 1000 + OOO_MS + 500, "11.00", 1)]))
        got = job.read_until(start, lambda g: any(decode(Bar, v).interval == "1s" for _, v in g))
        first = [bar for bar in (decode(Bar, v) for _, v in got) if bar.interval == "1s"]
        assert first
        assert first[0].window_start_ms == b0
        assert (first[0].symbol, first[0].volume, first[0].trade_count) == (sym, 8, 2)
    finally:
        rest.cancel(job_id)


@pytest.mark.parametrize(("group", "says"), [
    ({"args": "[]"}, f"{JOB_GROUP}.class must be a class of dev.tradesim.jobs."),
    ({"class": "java.lang.System", "args": "[]"}, f"{JOB_GROUP}.class must be a class of dev.tradesim.jobs."),
    ({"class": JOBS_JAR_MAIN, "args": "[]"}, f"{JOB_GROUP}.class must be a class of dev.tradesim.jobs."),
    ({"class": "dev.tradesim.jobs.Bars", "args": '{"bootstrap": "x"}'}, f"{JOB_GROUP}.args must be a JSON list"),
])
def test_properties_that_name_no_job_stop_it_with_the_reason(flink: Flink, settings: Settings, tmp_path: Path,
                                                             group: dict[str, str], says: str) -> None:
    """Run as a plain JVM with the cluster's jars (what fails here fails before any Flink client work)."""
    properties = _properties(tmp_path / "application_properties.json", group)
    classpath = ":".join(str(j) for j in [flink.jobs_jar, *sorted(flink.flink_home.glob("lib/*.jar"))])
    java = require_java("flink", settings.stack.java_home)
    done = subprocess.run([java, "-cp", classpath, JOBS_JAR_MAIN, "--properties", str(properties)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert f"IllegalArgumentException: {says}" in done.stderr


def test_the_jobs_packages_are_vendored_at_the_pyflink_venvs_versions_for_the_services_python(
        flink: Flink, tmp_path: Path) -> None:
    site_packages = flink.flink_home.parent
    pins = dict(p.split("==") for p in job_pins(site_packages))
    assert {"pydantic", "pydantic-core", "redis", "boto3", "botocore"} <= set(pins)
    folder = vendored_deps(tmp_path, site_packages, flink.python)
    held = dict(d.name.removesuffix(".dist-info").rsplit("-", 1) for d in folder.glob("*.dist-info"))
    assert {canonicalize_name(name): version for name, version in held.items()} == pins
    for wheel in folder.glob("*.dist-info/WHEEL"):
        tags = [line.split(": ", 1)[1] for line in wheel.read_text().splitlines() if line.startswith("Tag: ")]
        assert tags, wheel
        for tag in tags:  # pure Python, or CPython 3.12's ABI (or the stable one) on x86-64 manylinux
            interpreter, abi, platform = tag.split("-")
            if abi == "none":
                assert platform == "any", tag
            else:
                assert abi in ("cp312", "abi3"), tag
                assert platform.startswith("manylinux"), tag
                assert platform.endswith("x86_64"), tag
    assert list(folder.glob("pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so"))
    assert oct(folder.stat().st_mode & 0o777) == oct(0o755)  # readable wherever the artifact is unpacked
    fetches: list[str] = []
    assert vendored_deps(tmp_path, site_packages, flink.python, fetches.append) == folder
    assert fetches == []  # cached: the second synthesis fetches nothing
