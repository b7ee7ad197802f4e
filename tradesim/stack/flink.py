"""Flink 2.2 standalone session cluster (one JobManager + one TaskManager) run from the PyFlink wheel's scripts.

Why a separate venv (`<cache>/flink/<version>/venv`) instead of a dependency of tradesim: apache-flink pins
apache-beam 2.54–2.61, pandas<2.3, pyarrow<21, pemja, py4j and a 500 MB apache-flink-libraries wheel; those pins
would constrain everything else tradesim installs and slow every `pip install` of the CLI. The cluster, the
`flink run` client and the Python workers all use that venv's python (`python.executable` and
`python.client.executable`); tradesim itself is installed there in editable mode (`--no-deps`, plus the few
runtime deps the jobs import) so workers can import `tradesim.jobs.*` from this checkout.

Process model: the supervisor tracks one pid per component, so `argv()` runs `tradesim.stack.flink_proc`,
which starts `bin/jobmanager.sh start-foreground` and `bin/taskmanager.sh start-foreground`, restarts the
TaskManager when it dies, and stops both on SIGTERM.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import yaml

from tradesim.adapters.flink.client import FlinkRest
from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
from tradesim.files import replace_text
from tradesim.settings import child_env
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.errors import ProvisionError
from tradesim.stack.tools import Report, jdk_tool, maven_copy_dependencies, require_java, run_tool

POM = Path(__file__).parent / "java" / "flink" / "pom.xml"
#: the JVM jobs' sources (tradesim/jobs/jvm), compiled by `provision` against this Flink's jars
JVM_JOBS = Path(__file__).resolve().parents[1] / "jobs" / "jvm" / "src"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: what the jobs import besides PyFlink (events: pydantic; settings; execution: Redis + DynamoDB clients); pinned
#: to this venv's versions
JOB_RUNTIME_DEPS = ("pydantic", "pydantic-settings", "platformdirs", "redis", "boto3")
#: the jobs jar's Main-Class: what Managed Flink starts (`tradesim.infra`); locally every job is named with -c
JOBS_JAR_MAIN = "dev.tradesim.jobs.Managed"
#: in the jar's digest with its sources, the Main-Class and the release: bump it when the way the jar is put
#: together changes, so the change builds a new one
JOBS_JAR_LAYOUT = 2
JAVA_RELEASE = "17"
LOG_CONFIGS = ("log4j-console.properties", "log4j-cli.properties", "log4j.properties", "log4j-session.properties")


#: the main classes of the cluster's two JVMs (flink-console.sh)
FLINK_ENTRY_POINTS = frozenset({"org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                                "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"})


class Flink(Component):
    name = "flink"
    # no `needs`: the cluster starts without Kafka; its jobs (submitted once `up` is done) are what use Kafka

    @property
    def _cfg(self):  # noqa: ANN202 - short alias
        return self.settings.flink

    @property
    def external(self) -> bool:
        return self._cfg.rest_url is not None

    # ---- artifacts ------------------------------------------------------------------------------------------

    @property
    def cache(self) -> Path:
        return self.settings.cache_dir / "flink" / self._cfg.version

    @property
    def venv(self) -> Path:
        return self.cache / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def flink_home(self) -> Path:
        """FLINK_HOME = the wheel's `pyflink` folder (bin/, lib/, conf/, opt/)."""
        found = sorted(self.venv.glob("lib/python3*/site-packages/pyflink"))
        if not found:
            raise ProvisionError(self.name, f"no pyflink in {self.venv}: run `tradesim up --only flink`")
        return found[0]

    @property
    def flink_bin(self) -> Path:
        return self.flink_home / "bin" / "flink"

    @property
    def jars_dir(self) -> Path:
        return self.cache / "jars" / self._cfg.kafka_connector_version

    @property
    def connector_jars(self) -> list[Path]:
        return sorted(self.jars_dir.glob("flink-sql-connector-kafka-*.jar"))

    @functools.cached_property
    def jobs_jar(self) -> Path:
        """The JVM jobs' jar, with the Kafka connector inside (one file the cluster is sent, wherever it runs),
        named by a digest of the sources and the connector: a change to either builds a new jar."""
        recipe = (JOBS_JAR_LAYOUT, JOBS_JAR_MAIN, JAVA_RELEASE, self._cfg.kafka_connector_version)
        digest = hashlib.sha256("\0".join(map(str, recipe)).encode())
        for source in sorted(JVM_JOBS.rglob("*.java")):
            digest.update(b"\0" + source.relative_to(JVM_JOBS).as_posix().encode() + b"\0" + source.read_bytes())
        return self.cache / "jobs" / f"tradesim-jobs-{digest.hexdigest()[:12]}.jar"

    def _build_jobs_jar(self, report: Report) -> None:
        jar = self.jobs_jar
        if jar.exists():
            return
        java = require_java(self.name, self.settings.stack.java_home)
        javac, jar_tool = jdk_tool(java, "javac"), jdk_tool(java, "jar")
        if javac is None or jar_tool is None:
            raise ProvisionError(self.name, f"no javac beside {java}: the JVM jobs are compiled here, which needs "
                                 "a JDK, not a JRE (`apt-get install -y openjdk-17-jdk-headless`)")
        report(f"compiling the JVM jobs into {jar.name}")
        classpath = ":".join(str(j) for j in [*sorted(self.flink_home.glob("lib/*.jar")), *self.connector_jars])
        jar.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=jar.parent) as tmp:
            classes = Path(tmp) / "classes"
            run_tool(self.name, [str(javac), "--release", JAVA_RELEASE, "-nowarn", "-d", str(classes), "-cp", classpath,
                                 *map(str, sorted(JVM_JOBS.rglob("*.java")))], "javac (JVM jobs)")
            for connector in self.connector_jars:
                run_tool(self.name, [str(jar_tool), "xf", str(connector)], "jar xf (the connector)", cwd=classes)
            # its manifest and any signature go (`jar cf` writes our manifest); its LICENSE, NOTICE and service
            # files stay
            for meta in [classes / "META-INF" / "MANIFEST.MF", *classes.glob("META-INF/*.SF"),
                         *classes.glob("META-INF/*.RSA"), *classes.glob("META-INF/*.DSA")]:
                meta.unlink(missing_ok=True)
            staged = Path(tmp) / jar.name
            run_tool(self.name, [str(jar_tool), "cfe", str(staged), JOBS_JAR_MAIN, "-C", str(classes), "."],
                     "jar (JVM jobs)")
            staged.replace(jar)  # atomic: a half-written jar never counts
        for old in jar.parent.glob("tradesim-jobs-*.jar"):  # builds of earlier sources
            if old != jar:
                old.unlink(missing_ok=True)

    def _venv_marker(self) -> dict[str, str]:
        deps = {d: metadata.version(d) for d in JOB_RUNTIME_DEPS}
        return {"flink": self._cfg.version, "repo": str(REPO_ROOT), **deps}

    def provision(self, report: Report) -> None:
        require_java(self.name, self.settings.stack.java_home)
        self._provision_venv(report)
        maven_copy_dependencies(self.name, POM, self.jars_dir, report,
                                {"kafka.connector.version": self._cfg.kafka_connector_version})
        if not self.connector_jars:
            raise ProvisionError(self.name, f"Maven resolved no flink-sql-connector-kafka jar into {self.jars_dir}")
        self._build_jobs_jar(report)

    def _provision_venv(self, report: Report) -> None:
        marker_file = self.venv / ".tradesim-complete"
        want = self._venv_marker()
        have = None
        with contextlib.suppress(OSError, ValueError):  # missing, or torn (a full disk or a kill as it was written)
            have = json.loads(marker_file.read_text())
        if have == want:
            return
        pip = [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if not isinstance(have, dict) or have.get("flink") != want["flink"]:
            # A venv cannot be moved, so it is built in place; without the marker it never counts as done.
            shutil.rmtree(self.venv, ignore_errors=True)
            report(f"creating the PyFlink venv {self.venv}")
            base = getattr(sys, "_base_executable", sys.executable)
            run_tool(self.name, [base, "-m", "venv", str(self.venv)], "python -m venv")
            report(f"pip install apache-flink=={self._cfg.version} (a few minutes on a cold cache)")
            # --no-compile: byte-compiling every module of PyFlink's dependency tree is a fifth of this install's
            # CPU; the jobs import a small part of it, compiled on first import instead
            run_tool(self.name, [*pip, "--no-compile", f"apache-flink=={self._cfg.version}"],
                     "pip install apache-flink")
        report("installing tradesim (editable) and the jobs' runtime deps into the PyFlink venv")
        run_tool(self.name, [*pip, *(f"{d}=={v}" for d, v in want.items() if d in JOB_RUNTIME_DEPS)],
                 "pip install job runtime deps")
        # --no-deps: the jobs need only the domain model and PyFlink, not the CLI's clients
        run_tool(self.name, [*pip, "--no-deps", "-e", str(REPO_ROOT)], "pip install -e tradesim")
        replace_text(marker_file, json.dumps(want))

    # ---- configuration --------------------------------------------------------------------------------------

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(self._cfg.host, self._cfg.rest_port, "TRADESIM_FLINK__REST_PORT"),
            PortSpec(self._cfg.host, self._cfg.rpc_port, "TRADESIM_FLINK__RPC_PORT"),
        ]

    def address(self) -> str:
        return self._cfg.client_rest_url

    def version(self) -> str:
        return self._cfg.version

    @property
    def conf_dir(self) -> Path:
        return self.dir / "conf"

    def flink_config(self) -> dict[str, object]:
        c, d = self._cfg, self.dir
        return {
            "jobmanager.rpc.address": c.host,
            "jobmanager.rpc.port": c.rpc_port,
            "jobmanager.bind-host": c.host,
            "jobmanager.memory.process.size": f"{c.jobmanager_memory_mb}m",
            "taskmanager.bind-host": c.host,
            "taskmanager.host": c.host,
            "taskmanager.memory.process.size": f"{c.taskmanager_memory_mb}m",
            "taskmanager.numberOfTaskSlots": c.task_slots,
            "parallelism.default": c.parallelism,
            "rest.address": c.host,
            "rest.bind-address": c.host,
            "rest.port": c.rest_port,
            "blob.server.port": "0",
            "io.tmp.dirs": str(d / "tmp"),
            "web.tmpdir": str(d / "tmp"),
            "state.backend.type": "hashmap",
            "execution.checkpointing.dir": f"file://{d / 'checkpoints'}",
            "execution.checkpointing.savepoint-dir": f"file://{d / 'savepoints'}",
            "execution.checkpointing.interval": f"{c.checkpoint_interval_ms} ms",
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "execution.checkpointing.num-retained": 3,
            "jobmanager.execution.failover-strategy": "region",
            # keep restarting while the TaskManager comes back (flink_proc restarts it within seconds)
            "restart-strategy.type": "exponential-delay",
            "restart-strategy.exponential-delay.initial-backoff": "1 s",
            "restart-strategy.exponential-delay.max-backoff": "10 s",
            "restart-strategy.exponential-delay.attempts-before-reset-backoff": 1000000,
            # a killed TaskManager is noticed in seconds, not after the 50 s default
            "heartbeat.interval": 2000,
            "heartbeat.timeout": 10000,
            "classloader.parent-first-patterns.additional": "pemja.",
            # the `flink` client's JVM lives for seconds (a job submission): compiling with C1 only and one GC
            # thread cut its CPU by ~40 % (RESULTS, "Flink job submission")
            "env.java.opts.client": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            "python.executable": str(self.python),
            "python.client.executable": str(self.python),
            "python.execution-mode": c.execution_mode,
            # process mode batches records to the Python worker; small bundles keep bar latency low
            "python.fn-execution.bundle.time": 100,
            "python.fn-execution.bundle.size": 10000,
        }

    def configure(self) -> None:
        # The cluster's scratch (blobs, the RPC jar, the web UI's files; the TaskManager's in tmp/taskmanager,
        # which flink_proc empties before each start): a JobManager that stops removes its own, one killed leaves
        # ~80 MB here. Before a start none of ours may run: a JVM whose flink_proc was killed -9 (a JobManager's
        # ports stop the start before this; a TaskManager alone would join the new cluster) is stopped first.
        if self._stop_jvms_left():
            shutil.rmtree(self.dir / "tmp", ignore_errors=True)
        for sub in ("conf", "lib", "log", "pids", "tmp", "checkpoints", "savepoints"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        home = self.flink_home
        # The cluster's lib/ = the wheel's lib/ plus opt/flink-python: thread mode loads PEMJA's native library
        # once per JVM, so a second Python job whose own classloader loads PEMJA again fails on Java 17
        # (NoSuchFieldException: loadedLibraryNames). From lib/ (with pemja parent-first) it is loaded once.
        lib = self.dir / "lib"
        for old in lib.iterdir():
            old.unlink()
        for jar in [*home.glob("lib/*.jar"), *home.glob("opt/flink-python-*.jar")]:
            (lib / jar.name).symlink_to(jar)
        for name in LOG_CONFIGS:
            src = home / "conf" / name
            if src.exists():
                shutil.copyfile(src, self.conf_dir / name)
        config = self.flink_config()
        # Flink on Java 17 needs the wheel's --add-opens/--add-exports list (the client and the JVMs fail with
        # InaccessibleObjectException without it); taken from its own config so it follows the version.
        shipped = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
        java_opts = shipped.get("env", {}).get("java", {}).get("opts", {}).get("all")
        if java_opts:
            config["env.java.opts.all"] = java_opts
        text = "# generated by tradesim (tradesim/stack/flink.py); edits are overwritten by `tradesim up`\n"
        text += yaml.safe_dump(config, sort_keys=False, width=100_000)
        (self.conf_dir / "config.yaml").write_text(text)

    def client_env(self) -> dict[str, str]:
        """Environment of the cluster scripts and of the `flink` client: our conf, log and pid dirs, JAVA_HOME."""
        java = Path(require_java(self.name, self.settings.stack.java_home))
        java_home = Path(os.path.realpath(shutil.which(str(java)) or java)).parents[1]
        return dict(os.environ, FLINK_CONF_DIR=str(self.conf_dir), FLINK_LOG_DIR=str(self.dir / "log"),
                    FLINK_PID_DIR=str(self.dir / "pids"), JAVA_HOME=str(java_home),
                    PATH=f"{java_home / 'bin'}:{os.environ.get('PATH', '')}")

    def env(self) -> dict[str, str]:
        # The job functions run in the TaskManager and build their clients from the stack's settings; they see
        # exactly the settings this cluster was started with (no secrets on the job's command line).
        env = child_env(self.settings.routed(), self.client_env())
        # Thread mode embeds CPython in the TaskManager JVM (PEMJA), which ignores the venv (it initialises from
        # the base interpreter, FLINK-38585): without this it fails with "No module named 'pemja'". .pth files
        # are not read from PYTHONPATH entries, so this checkout (the editable tradesim) is listed too.
        site = self.flink_home.parent
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
        env["FLINK_LIB_DIR"] = str(self.dir / "lib")
        return env

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tradesim.stack.flink_proc", str(self.flink_home), str(self.dir / "pids"),
                str(self.dir / "tmp" / "taskmanager")]

    def before_stop(self, report: Report) -> None:
        """Park the running jobs (stop them with a savepoint, noted for their next submit): a Flink that simply
        stops takes the books and their resting orders with it (tradesim.stack.jobs.park_jobs)."""
        from tradesim.stack.jobs import park_jobs

        park_jobs(self.settings, report)

    def after_restart(self, report: Report) -> None:
        """Submit again the jobs whose runs died with the cluster, each from its last checkpoint: without a
        JobManager of its own history (no HA here), a restarted cluster runs nothing (tradesim.stack.jobs)."""
        from tradesim.stack.jobs import resubmit_lost

        resubmit_lost(self.settings, report)

    def _jvms_left(self) -> set[int]:
        """The cluster's JVMs still alive by their pid files (their flink_proc was killed -9, not stopped)."""
        alive = set()
        for pid_file in (self.dir / "pids").glob("*.pid"):
            try:
                pids = [int(word) for word in pid_file.read_text().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                except OSError:
                    continue
                if self._is_our_jvm(argv):
                    alive.add(pid)
        return alive

    def _is_our_jvm(self, argv: list[str]) -> bool:
        """A JobManager or TaskManager of this stack: one of the two entry points, started with this stack's
        config folder (a pid in a pid file may since belong to anything, another stack's Flink included)."""
        pairs = zip(argv, argv[1:], strict=False)
        return bool(FLINK_ENTRY_POINTS & set(argv)) and ("--configDir", str(self.conf_dir)) in pairs

    def _stop_jvms_left(self, timeout_s: float = 10.0) -> bool:
        """Kill the JVMs a dead flink_proc left; True once none is alive (False: leave their files alone)."""
        for pid in self._jvms_left():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while self._jvms_left():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def taskmanager_pid(self) -> int | None:
        """Pid of the TaskManager JVM that flink_proc runs now (tests kill it)."""
        try:
            return int((self.dir / "pids" / "taskmanager.pid").read_text())
        except (OSError, ValueError):
            return None

    # ---- health ---------------------------------------------------------------------------------------------

    def rest(self) -> FlinkRest:
        return FlinkRest(self._cfg.client_rest_url, timeout_s=3)

    def check_health(self) -> None:
        try:
            overview = self.rest().overview()
        except (FlinkUnavailable, FlinkRequestError) as exc:
            raise Unhealthy(str(exc)) from None
        if not isinstance(taskmanagers := overview.get("taskmanagers"), int) or taskmanagers < 1:
            raise Unhealthy(f"JobManager at {self.shown_address()} has no registered TaskManager yet")
