"""Synthesis of the CDK app into CloudFormation templates: the jsii runtime runs on this machine's Node.js and
nothing is looked up in an AWS account. The Flink code artifacts are built here too (tradesim.infra.artifact)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tradesim.infra.environments import ENVIRONMENTS
from tradesim.stack.dynamodb import MIN_NODE, node_major

#: what marks a folder as a synthesis's: tradesim's own, written first, and the file CDK writes last
SYNTH_MARKER = ".tradesim-synth"
ASSEMBLY_MARKER = "cdk.out"
DEFAULT_REGION = "us-east-1"
LAUNCH_TEMPLATES = "@aws-cdk/aws-autoscaling:generateLaunchTemplateInsteadOfLaunchConfig"


class NodeMissing(RuntimeError):
    pass


@dataclass
class Synthesis:
    outdir: Path
    template: Path
    stack: object  # TradesimStack: typed loosely so this module imports without aws_cdk
    #: the Python application's code folder (the asset zips it)
    artifact: Path


def require_node() -> int:
    """The major version of the Node.js on PATH; NodeMissing when there is none or it is too old."""
    node = shutil.which("node")
    major = node_major(node) if node else None
    if major is None or major < MIN_NODE:
        found = f"Node.js {major} is on PATH" if major else "no working Node.js on PATH"
        raise NodeMissing(f"{found}: synthesis runs the CDK on Node.js {MIN_NODE}+ (jsii); install it")
    return major


def check_runtime(flink_version: str) -> None:
    """The jobs jar and the Python pins come from the local Flink (`flink.version`); Managed Flink runs them on
    `RUNTIME`: a local Flink of another line would build artifacts its runtime cannot load."""
    from tradesim.infra.flink import RUNTIME
    from tradesim.stack.errors import UserError

    major, _, rest = flink_version.partition(".")
    if RUNTIME != f"FLINK-{major}_{rest.partition('.')[0]}":
        raise UserError(f"Managed Flink runs the jobs on {RUNTIME}, but flink.version is {flink_version} (the jobs "
                        "jar and the Python pins are built from it): synthesize with the default flink.version")


def synthesize(env_name: str, outdir: Path, *, region: str = DEFAULT_REGION, clickhouse_url: str | None = None,
               clickhouse_user: str = "default", jobs_jar: Path | None = None, deps: Path | None = None,
               report: Callable[[str], None] = lambda _: None) -> Synthesis:
    """`jobs_jar` and `deps` (the jobs' vendored packages): by default the local stack's jar and the packages of
    its PyFlink venv fetched for Managed Flink's Python (`tradesim provision --only flink` first, if needed)."""
    major = require_node()
    # jsii prints a boxed notice on every start under a Node.js past its end of life (20 since 2026-10-30);
    # synthesis works the same on it (checked on 20.20), so the notice would only bury the output
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", str(major))
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", str(major))
    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    from tradesim.infra.artifact import stage_artifact, vendored_deps
    from tradesim.infra.stack import TradesimStack

    env = ENVIRONMENTS[env_name]
    local_settings = None
    if jobs_jar is None or deps is None:  # built from this machine's Flink: of the runtime's line, else nothing made
        from tradesim.settings import load_settings

        local_settings = load_settings()
        check_runtime(local_settings.flink.version)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / SYNTH_MARKER).touch()  # before anything else: a synthesis that stops half-way still owns the folder
    artifact = outdir / "flink-app"  # inside the assembly folder: nothing is written or removed beside it
    if local_settings is not None:  # this machine's: its settings say where its cache is
        from tradesim.stack.flink import Flink

        settings = local_settings
        local = Flink(settings)
        local.provision_locked(report)  # the jobs jar, and the PyFlink venv the pins come from (no-op when both exist)
        jobs_jar = jobs_jar or local.jobs_jar
        if deps is None:
            deps = vendored_deps(settings.cache_dir, local.flink_home.parent, local.python, report)
    stage_artifact(artifact, jobs_jar, deps)
    # a launch template, not a launch configuration (an EC2 Auto Scaling feature in maintenance since 2024)
    app = App(outdir=str(outdir), context={LAUNCH_TEMPLATES: True})
    stack = TradesimStack(app, f"tradesim-{env.name}", env=env, region=region, artifact=artifact,
                          clickhouse_url=clickhouse_url, clickhouse_user=clickhouse_user)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()
    return Synthesis(outdir, outdir / f"{stack.stack_name}.template.json", stack, artifact)
