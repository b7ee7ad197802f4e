"""The CDK command line's entry (`cdk synth` run from infra/, see cdk.json): the same app `tradesim infra synth`
builds, from `-c env=dev|prod` (default dev) and the region in CDK_DEFAULT_REGION (no --clickhouse-url here).
To deploy what `tradesim infra synth` wrote, `cdk deploy --app <its --out folder>`: a plain `cdk deploy` here
synthesizes again from these inputs alone."""

import json
import os
import sys
from pathlib import Path

from tradesim.infra.environments import ENVIRONMENTS
from tradesim.infra.synth import DEFAULT_REGION, synthesize

context = json.loads(os.environ.get("CDK_CONTEXT_JSON", "{}"))
env = context.get("env", "dev")
if env not in ENVIRONMENTS:
    sys.exit(f"error: -c env= must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
synthesize(env, Path(os.environ.get("CDK_OUTDIR", "cdk.out")),
           region=os.environ.get("CDK_DEFAULT_REGION", DEFAULT_REGION))
