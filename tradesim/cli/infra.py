"""`tradesim infra synth`: the AWS CDK app (tradesim/infra) as CloudFormation templates, with no AWS account."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from tradesim.cli.errors import check_output_folder, cli_errors
from tradesim.cli.readout import console

# aws_cdk loads in synthesize
from tradesim.infra.synth import ASSEMBLY_MARKER, DEFAULT_REGION, SYNTH_MARKER, NodeMissing, synthesize
from tradesim.settings import check_url, load_settings, redacted
from tradesim.stack.errors import StackError, UserError
from tradesim.stack.flink import REPO_ROOT

app = typer.Typer(help="Infrastructure as code: the whole system on AWS managed services (AWS CDK).",
                  no_args_is_help=True)
out = console()
DEFAULT_OUT = REPO_ROOT / "infra" / "cdk.out"
CDK_MODULES = ("aws_cdk", "cdk_nag", "constructs", "jsii", "packaging")
#: an AWS region's name: us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1, cn-north-1, eusc-de-east-1; of
#: 32 characters at most, as dynamodb.region takes it (a longer one failed the synthesis with a traceback)
REGION_RE = r"(?=.{1,32}$)[a-z]{2,4}(-[a-z]+)+-[0-9]+"


class Env(StrEnum):
    dev = "dev"
    prod = "prod"


@app.command()
@cli_errors
def synth(
    env: Annotated[Env, typer.Option("--env", help="Sizes of the environment (tradesim/infra/environments.py).")]
    = Env.dev,
    out_dir: Annotated[Path, typer.Option("--out", help="Cloud assembly folder.")] = DEFAULT_OUT,
    region: Annotated[str, typer.Option(help="AWS region the templates are for.")] = DEFAULT_REGION,
    clickhouse_url: Annotated[str | None, typer.Option(
        help="An existing ClickHouse (http(s)://host:port) instead of the ECS-on-EC2 server; its password goes "
             "into the stack's ClickHousePassword secret (output ClickHousePasswordSecret).")] = None,
    clickhouse_user: Annotated[str, typer.Option(
        help="The user the services log in as, with --clickhouse-url.")] = "default",
) -> None:
    """Write the CloudFormation templates of every service, store, job and alarm; checked by cdk-nag's
    AwsSolutions pack as they are built (a finding fails the synthesis unless acknowledged with its reason)."""
    if not re.fullmatch(REGION_RE, region):
        raise UserError(f"--region must be an AWS region name like {DEFAULT_REGION}, got {region!r}")
    if clickhouse_url is not None:
        try:
            if "${" in clickhouse_url:  # check_url lets the synthesis's own tokens through; a user's is a mistake
                raise ValueError("must be a URL, not a placeholder")
            check_url(clickhouse_url, "http", "https")
            if urlsplit(clickhouse_url).netloc.rpartition("@")[1]:
                # the URL goes into the template as it is, readable by anyone who can read the stack
                raise ValueError("must not hold a user or password: give --clickhouse-user, and put the password "
                                 "in the stack's ClickHousePassword secret after deploying")
        except ValueError as exc:
            raise UserError(f"--clickhouse-url {exc}, got {redacted(clickhouse_url)!r}") from None
    elif clickhouse_user != "default":
        raise UserError("--clickhouse-user goes with --clickhouse-url (the stack's own ClickHouse has its user)")
    load_settings()  # a settings mistake is named before anything is made
    check_output_folder(out_dir, "--out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not any(
            (out_dir / marker).is_file() for marker in (SYNTH_MARKER, ASSEMBLY_MARKER)):
        raise UserError(f"--out {out_dir} holds files a synthesis did not write: give a new or empty folder (the "
                        "synthesis writes over what is in it)")
    try:
        result = synthesize(env.value, out_dir.resolve(), region=region, clickhouse_url=clickhouse_url,
                            clickhouse_user=clickhouse_user, report=lambda line: out.print(line))
    except NodeMissing as exc:
        raise UserError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name not in CDK_MODULES:
            raise
        raise UserError(f"the CDK libraries are not installed ({exc.name}): pip install -e '.[infra]'") from None
    except RuntimeError as exc:  # the CDK's errors come from Node.js through jsii as RuntimeError
        if "ValidationFailed" in str(exc):
            raise StackError(f"cdk-nag found what no acknowledgment covers: see {out_dir / 'validation-report.json'}"
                             ) from None
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise StackError(f"the synthesis failed: {first}") from None
    out.print(f"wrote {result.template}")
