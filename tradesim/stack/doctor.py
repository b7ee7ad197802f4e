"""Checks of the machine for `tradesim doctor`: each problem comes with the exact fix."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from tradesim.settings import Settings
from tradesim.stack.component import Component
from tradesim.stack.process import OsProcessTable, ProcessTable
from tradesim.stack.state import StateFile
from tradesim.stack.tools import MIN_JAVA, java_executable, java_major_version

MIN_FREE_DISK_GB = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(settings: Settings, components: list[Component],
               processes: ProcessTable | None = None) -> list[Check]:
    processes = processes or OsProcessTable()
    checks: list[Check] = []
    java = java_executable(settings.stack.java_home)
    major = java_major_version(java)
    if major is None:
        checks.append(Check("java", False, f"{java} does not run",
                            "apt-get install -y openjdk-17-jre-headless (or set TRADESIM_STACK__JAVA_HOME)"))
    else:
        checks.append(Check("java", major >= MIN_JAVA, f"Java {major} at {java}",
                            "" if major >= MIN_JAVA else "set TRADESIM_STACK__JAVA_HOME to a JDK 17+"))
    for tool, package in (("mvn", "maven"), ("apt-get", "apt")):
        path = shutil.which(tool)
        checks.append(Check(tool, path is not None, path or "not found",
                            "" if path else f"apt-get install -y {package}"))
    redis = shutil.which("redis-server")
    if redis:
        checks.append(Check("redis-server", True, redis))
    elif os.geteuid() == 0:
        checks.append(Check("redis-server", True, "not installed; `tradesim up` installs it with apt-get"))
    else:
        checks.append(Check("redis-server", False, "not installed", "sudo apt-get install -y redis-server"))

    settings.home.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(settings.home).free / 1e9
    checks.append(Check("disk", free_gb >= MIN_FREE_DISK_GB, f"{free_gb:.1f} GB free at {settings.home}",
                        "" if free_gb >= MIN_FREE_DISK_GB else f"free at least {MIN_FREE_DISK_GB} GB or set "
                        "TRADESIM_HOME / TRADESIM_CACHE_DIR to a bigger disk"))

    ours = StateFile(settings.stack_dir).load().components
    for comp in components:
        if comp.external:
            continue
        record = ours.get(comp.name)
        mine = record is not None and processes.is_alive(record.handle)
        for spec in comp.ports():
            taken = processes.port_in_use(spec.host, spec.port)
            if mine:
                checks.append(Check(f"port {spec.port}", True, f"used by our {comp.name}"))
            else:
                checks.append(Check(f"port {spec.port}", not taken,
                                    f"{comp.name}: {'in use by another process' if taken else 'free'}",
                                    f"stop that process or set {spec.setting}" if taken else ""))
    return checks
