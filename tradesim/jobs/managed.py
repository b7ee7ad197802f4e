"""Entry point of the jobs on Amazon Managed Service for Apache Flink, which starts a Python file with no
arguments and no environment of ours: both come from the application's runtime properties.

Property group `tradesim.job`: `module` (e.g. tradesim.jobs.execution) and `args` (a JSON list, as
`tradesim.stack.jobs.job_args` builds it); group `tradesim.env`: TRADESIM_* settings. The CDK app in
tradesim/infra writes both. The settings reach the operators on the TaskManagers inside the operators
themselves (`carried` when the graph is built, `adopt` in their `open`), since only the process that builds
the graph is known to see the properties."""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: where the service puts the application's runtime properties
PROPERTIES = Path("/etc/flink/application_properties.json")
JOB_GROUP = "tradesim.job"
ENV_GROUP = "tradesim.env"


def property_groups(path: Path = PROPERTIES) -> dict[str, dict[str, str]]:
    groups: list[dict[str, Any]] = json.loads(path.read_text())
    return {g["PropertyGroupId"]: g["PropertyMap"] for g in groups}


def prepare(groups: dict[str, dict[str, str]]) -> tuple[str, list[str]]:
    """Sets the TRADESIM_* variables (those already set win) and returns the job's module and arguments."""
    variables = groups.get(ENV_GROUP, {})
    if strays := [name for name in variables if not name.startswith("TRADESIM_")]:
        raise ValueError(f"property {strays[0]!r} of {ENV_GROUP} is not a TRADESIM_* setting")
    adopt(variables)
    job = groups[JOB_GROUP]
    args = json.loads(job["args"])
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise ValueError(f"{JOB_GROUP}.args must be a JSON list of strings, got {job['args']!r}")
    return job["module"], args


#: settings the jobs never use and must not copy into the job graph (Flink keeps it in its blob store)
_NOT_CARRIED = ("TRADESIM_API__ADMIN_KEY", "TRADESIM_CLICKHOUSE__PASSWORD")


def carried() -> dict[str, str]:
    """The TRADESIM_* variables of the process building the job graph, for an operator to take along."""
    return {k: v for k, v in os.environ.items() if k.startswith("TRADESIM_") and k not in _NOT_CARRIED}


def adopt(variables: Mapping[str, str]) -> None:
    """Sets the variables in a process that has no TRADESIM_* settings of its own (Managed Flink's). A process
    the stack started (a local TaskManager) has every setting and keeps exactly those."""
    if not any(name.startswith("TRADESIM_") for name in os.environ):
        os.environ.update(variables)


def main() -> None:
    module, args = prepare(property_groups())
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
