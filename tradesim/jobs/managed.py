"""Entry point of the jobs on Amazon Managed Service for Apache Flink, which starts a Python file with no
arguments and no environment of ours: both come from the application's runtime properties.

Property group `tradesim.job`: `module` (e.g. tradesim.jobs.execution) and `args` (a JSON list, as
`tradesim.stack.jobs.job_args` builds it); group `tradesim.env`: TRADESIM_* settings, for the code that calls
`load_settings()`. The CDK app in tradesim/infra writes both."""

from __future__ import annotations

import json
import os
import runpy
import sys
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
    for name, value in groups.get(ENV_GROUP, {}).items():
        if not name.startswith("TRADESIM_"):
            raise ValueError(f"property {name!r} of {ENV_GROUP} is not a TRADESIM_* setting")
        os.environ.setdefault(name, value)
    job = groups[JOB_GROUP]
    args = json.loads(job["args"])
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise ValueError(f"{JOB_GROUP}.args must be a JSON list of strings, got {job['args']!r}")
    return job["module"], args


def main() -> None:
    module, args = prepare(property_groups())
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
