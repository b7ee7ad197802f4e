"""Synthesis of the CDK app into CloudFormation templates, offline: the jsii runtime runs on this machine's Node.js
and nothing is looked up in an AWS account."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tradesim.infra.environments import ENVIRONMENTS
from tradesim.stack.dynamodb import MIN_NODE, node_major

DEFAULT_REGION = "us-east-1"
LAUNCH_TEMPLATES = "@aws-cdk/aws-autoscaling:generateLaunchTemplateInsteadOfLaunchConfig"


class NodeMissing(RuntimeError):
    pass


@dataclass
class Synthesis:
    outdir: Path
    template: Path
    stack: object  # TradesimStack: typed loosely so this module imports without aws_cdk
    #: the code artifact has the Kafka connector jar (fetched by `tradesim provision --only flink`)
    connector_jar: bool


def require_node() -> int:
    """The major version of the Node.js on PATH; NodeMissing when there is none or it is too old."""
    node = shutil.which("node")
    major = node_major(node) if node else None
    if major is None or major < MIN_NODE:
        found = f"Node.js {major} is on PATH" if major else "no working Node.js on PATH"
        raise NodeMissing(f"{found}: synthesis runs the CDK on Node.js {MIN_NODE}+ (jsii); install it")
    return major


def synthesize(env_name: str, outdir: Path, *, region: str = DEFAULT_REGION, clickhouse_url: str | None = None,
               connector_jars: list[Path] | None = None) -> Synthesis:
    major = require_node()
    # jsii prints a boxed notice on every start under a Node.js past its end of life (20 since 2026-10-30);
    # synthesis works the same on it (checked on 20.20), so the notice would only bury the output
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", str(major))
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", str(major))
    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    from tradesim.infra.flink import stage_artifact
    from tradesim.infra.stack import TradesimStack

    env = ENVIRONMENTS[env_name]
    outdir.mkdir(parents=True, exist_ok=True)
    artifact = outdir.parent / f"{outdir.name}.flink-app"
    if connector_jars is None:  # those the local stack fetched, if it has
        from tradesim.settings import load_settings
        from tradesim.stack.flink import Flink

        connector_jars = Flink(load_settings()).connector_jars
    has_jar = stage_artifact(artifact, connector_jars)
    # a launch template, not a launch configuration (an EC2 Auto Scaling feature in maintenance since 2024)
    app = App(outdir=str(outdir), context={LAUNCH_TEMPLATES: True})
    stack = TradesimStack(app, f"tradesim-{env.name}", env=env, region=region, artifact=artifact,
                          clickhouse_url=clickhouse_url)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()
    return Synthesis(outdir, outdir / f"{stack.stack_name}.template.json", stack, has_jar)
