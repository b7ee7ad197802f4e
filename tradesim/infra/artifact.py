"""The Flink code artifacts built from the repo for Managed Flink: the jobs' third-party packages vendored for the
service's Python (pinned to the local PyFlink venv's versions) and the folder the Python application's zip is made
of. No CDK here: tradesim.infra.flink wires these into the applications."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tradesim.stack.errors import ProvisionError
from tradesim.stack.flink import JOB_RUNTIME_DEPS
from tradesim.stack.tools import run_tool

#: the Python and platform of Managed Flink's FLINK-2_2 runtime (tradesim.infra.flink.RUNTIME)
MANAGED_PYTHON = "3.12"
MANAGED_PLATFORM = "manylinux2014_x86_64"
JOBS_JAR = "lib/tradesim-jobs.jar"
#: the `pyFiles` folder: the tradesim package and its third-party packages (the service installs nothing)
PYLIB = "pylib"
MAIN = "main.py"
PACKAGE = Path(__file__).resolve().parents[1]
_ENTRY = f"""import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "{PYLIB}"))

from tradesim.jobs.managed import main  # noqa: E402

main()
"""


def job_pins(site_packages: Path) -> list[str]:
    """The jobs' third-party packages and all they need, at the versions installed in `site_packages` (the local
    PyFlink venv), for the service's Python: the artifact holds the packages that run beside PyFlink here."""
    marker_env = {"python_version": MANAGED_PYTHON, "python_full_version": f"{MANAGED_PYTHON}.0",
                  "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                  "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site_packages)])}
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(canonicalize_name(d), frozenset()) for d in JOB_RUNTIME_DEPS]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        item = todo.pop()
        if item in seen:  # (a package asked for with other extras is looked at again, for those)
            continue
        seen.add(item)
        name, extras = item
        dist = installed.get(name)
        if dist is None:
            raise ProvisionError("infra", f"{name} is not in {site_packages}: provision Flink again "
                                 "(`tradesim provision --only flink`)")
        pins[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({**marker_env, "extra": e}) for e in ("", *extras)):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return [f"{n}=={v}" for n, v in sorted(pins.items())]


def vendored_deps(cache: Path, site_packages: Path, python: Path,
                  report: Callable[[str], None] = lambda _: None) -> Path:
    """`job_pins` as built for the service's Python and platform (`pip install --target` run by `python`, the
    PyFlink venv's, which has pip; binary wheels only), in a cache folder named by the pins: fetched from PyPI
    once, offline afterwards."""
    pins = job_pins(site_packages)
    digest = hashlib.sha256("\n".join([MANAGED_PYTHON, MANAGED_PLATFORM, *pins]).encode()).hexdigest()[:12]
    root = cache / "infra"
    folder = root / f"pylib-{digest}"
    if folder.exists():
        return folder
    report(f"fetching the jobs' Python packages for Python {MANAGED_PYTHON} on {MANAGED_PLATFORM}")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix="staging-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would travel into the artifact
    try:
        # --no-deps: the pins are the whole set (environment markers are pip's own Python's, not the target's)
        run_tool("infra", [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--no-compile", "--no-deps", "--target", str(staging), "--platform", MANAGED_PLATFORM,
                           "--python-version", MANAGED_PYTHON, "--implementation", "cp", "--only-binary=:all:",
                           *pins], "pip install (the jobs' packages for Managed Flink)",
                 timeout_s=600)
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: nothing runs them there
        try:
            staging.rename(folder)
        except OSError:  # another synthesis got there first with the same pins
            if not folder.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in root.iterdir():  # built for other pins, or left by a build that was killed an hour ago or more
        if (old != folder and re.fullmatch(r"pylib-[0-9a-f]{12}", old.name)) or (
                old.name.startswith("staging-") and time.time() - old.stat().st_mtime > 3600):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def stage_artifact(target: Path, jobs_jar: Path, deps: Path) -> None:
    """The Python application's code folder (zipped by the asset): main.py, which puts `pylib` on the path and
    hands over to tradesim.jobs.managed; `pylib` (also the `pyFiles` the workers get): the tradesim package without
    the CLI, TUI and this app, plus `deps`; the jobs jar as `jarfile`; the pins, for the record."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(deps, target / PYLIB)
    left_out = shutil.ignore_patterns("__pycache__", "cli", "tui", "infra", "*.pyc")
    inside = target.resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        # an assembly folder inside the package (`--out tradesim/out`) is not the package's: copied, it would take
        # the copy being made in it along, into itself, until the path is too long
        return left_out(folder, names) | {n for n in names if inside.is_relative_to(Path(folder, n).resolve())}

    shutil.copytree(PACKAGE, target / PYLIB / "tradesim", ignore=ignore)
    (target / MAIN).write_text(_ENTRY)
    held = sorted(d.name.removesuffix(".dist-info").rsplit("-", 1) for d in deps.glob("*.dist-info"))
    (target / "requirements.txt").write_text("".join(f"{name}=={version}\n" for name, version in held))
    (target / JOBS_JAR).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(jobs_jar, target / JOBS_JAR)
