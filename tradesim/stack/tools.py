"""Package clients and JVM helpers used to provision components (mvn, apt-get, java)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from tradesim.lifetime import kill_session, own_session_child
from tradesim.stack.errors import ProvisionError

Report = Callable[[str], None]
MIN_JAVA = 17


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


#: provisioning commands running now (`stop_tools` ends them when an `up` fails beside a build)
_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()
#: how long the output of a killed command is waited for (a child that left its session may hold the pipes)
KILLED_OUTPUT_WAIT_S = 10


def run_tool(component: str, argv: list[str], what: str, *, cwd: Path | None = None,
             env: dict[str, str] | None = None, timeout_s: float = 1800) -> str:
    """Run a provisioning command; on failure raise ProvisionError with a one-line cause and the output tail."""
    try:
        # in a session of its own, so a timeout or a stop kills its children too: killed alone, it left them
        # holding its output pipes, and the wait for that output outlasted the timeout until they finished
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except FileNotFoundError:
        raise ProvisionError(component, f"{what}: '{argv[0]}' is not installed") from None
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        # interrupted (or a second signal's stop_children), the command does not outlive the provisioning that ran it
        with own_session_child(proc):
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                kill_session(proc)
                try:
                    out, _ = proc.communicate(timeout=KILLED_OUTPUT_WAIT_S)
                except subprocess.TimeoutExpired:  # a child out of its session still holds the pipes: no output
                    for pipe in (proc.stdout, proc.stderr):
                        if pipe:
                            pipe.close()
                    proc.wait()
                    out = ""
                raise ProvisionError(component, f"{what}: timed out after {timeout_s:.0f} s",
                                     tail(out or "")) from None
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    if proc.returncode != 0:
        raise ProvisionError(component, f"{what} failed (exit {proc.returncode}): {' '.join(argv)}",
                             tail(out + err))
    return out


def stop_tools() -> None:
    """Kill the provisioning commands running now (a build beside an `up` that failed: it must not outlive it)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        kill_session(proc)


def java_home(configured: Path | None) -> Path | None:
    if configured:
        return configured
    env = os.environ.get("JAVA_HOME")
    return Path(env) if env else None


def java_executable(configured: Path | None) -> str:
    home = java_home(configured)
    if home:
        return str(home / "bin" / "java")
    found = shutil.which("java")
    return found or "java"


def jdk_tool(java: str, tool: str) -> Path | None:
    """A JDK tool (javac, jar) beside this java binary, symlinks resolved; None under a JRE."""
    found = shutil.which(java)
    path = Path(os.path.realpath(found)).with_name(tool) if found else None
    return path if path and path.exists() else None


def java_major_version(java: str) -> int | None:
    """Major version of a java binary, or None if it cannot run. In a session of its own: asked in the middle of a
    clean-up (a backup resuming its jobs), it must not die with the terminal's Ctrl-C and fail the resume."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False,
                              start_new_session=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java(component: str, configured: Path | None) -> str:
    java = java_executable(configured)
    major = java_major_version(java)
    if major is None:
        raise ProvisionError(component, "Java is not installed or does not run: install a JDK 17+ "
                             "(`apt-get install -y openjdk-17-jdk-headless`) or set TRADESIM_STACK__JAVA_HOME")
    if major < MIN_JAVA:
        raise ProvisionError(component, f"Java {major} found at {java}, {component} needs Java {MIN_JAVA}+: "
                             "set TRADESIM_STACK__JAVA_HOME to a newer JDK")
    return java


def maven_copy_dependencies(component: str, pom: Path, out_dir: Path, report: Report,
                            properties: dict[str, str] | None = None) -> None:
    """Resolve the jars of `pom` from Maven Central into out_dir (atomically: a partial copy never counts)."""
    if shutil.which("mvn") is None:
        raise ProvisionError(component, "Maven (mvn) is not installed: `apt-get install -y maven`")
    marker = out_dir / ".complete"
    if marker.exists():
        return
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    report(f"fetching jars from Maven Central ({pom.parent.name})")
    argv = ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}"]
    argv += [f"-D{k}={v}" for k, v in (properties or {}).items()]
    run_tool(component, argv, "mvn dependency:copy-dependencies")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    marker.write_text("ok\n")


#: how long apt-get waits for the package lock another apt holds
APT_LOCK_WAIT_S = 300


def apt_install(component: str, packages: list[str], report: Report, *, recommends: bool = True) -> None:
    """Install Debian packages when root; otherwise tell the exact command to run. `recommends=False` leaves out
    what the packages only recommend (Prometheus recommends an exporter of the whole host)."""
    command = "apt-get install -y " + " ".join(packages)
    if shutil.which("apt-get") is None:
        raise ProvisionError(component, f"{' '.join(packages)} missing and apt-get not found: install "
                             f"{' '.join(packages)} with your package manager")
    if os.geteuid() != 0:
        raise ProvisionError(component, f"{' '.join(packages)} is not installed: run `sudo {command}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    report(f"apt-get install {' '.join(packages)}")
    # another apt (a second stack's `up`, the system's updates) holding the lock is waited for, not a failure
    wait = ["-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}"]
    install = ["apt-get", *wait, "install", "-y", "-q", *([] if recommends else ["--no-install-recommends"]),
               *packages]
    try:
        run_tool(component, install, "apt-get install", env=env)
    except ProvisionError:
        # A fresh machine may have empty package lists: refresh once, then retry.
        report("apt-get update")
        run_tool(component, ["apt-get", *wait, "update", "-q"], "apt-get update", env=env)
        run_tool(component, install, "apt-get install", env=env)


def stop_packaged_service(service: str, report: Report) -> None:
    """A Debian package may start its system-wide server (on all interfaces, on our ports); only our process may
    hold our ports, so stop and disable it."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        active = subprocess.run(["systemctl", "is-active", "--quiet", service], check=False, timeout=30).returncode
        if active == 0:
            report(f"stopping and disabling the {service} system service the package started")
            subprocess.run(["systemctl", "disable", "--now", service], check=False, capture_output=True, timeout=60)
    elif Path(f"/etc/init.d/{service}").exists():
        # without systemd the package's init script may have started it (policy-rc.d usually blocks that)
        subprocess.run([f"/etc/init.d/{service}", "stop"], check=False, capture_output=True, timeout=60)


def go_version(go: str) -> tuple[int, ...] | None:
    """The Go toolchain's version as numbers (`go version` → go1.26.8 → (1, 26, 8)); None if it cannot tell."""
    import re

    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"go(\d+(?:\.\d+)+)", out)
    return tuple(int(n) for n in found.group(1).split(".")) if found else None
