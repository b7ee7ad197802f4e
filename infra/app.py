"""The CDK command line's entry (`cdk synth`, `cdk deploy` run from infra/, see cdk.json): the same app
`tradesim infra synth` builds. The environment comes from `-c env=dev|prod` (default dev)."""

import json
import os
from pathlib import Path

from tradesim.infra.synth import DEFAULT_REGION, synthesize

context = json.loads(os.environ.get("CDK_CONTEXT_JSON", "{}"))
synthesize(context.get("env", "dev"), Path(os.environ.get("CDK_OUTDIR", "cdk.out")),
           region=os.environ.get("CDK_DEFAULT_REGION", DEFAULT_REGION))
