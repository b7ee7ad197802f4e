"""The standard Flink jobs as Amazon Managed Service for Apache Flink applications, each job's arguments from the
same catalog `tradesim jobs submit` uses. Two code artifacts built from the repo: the jobs jar (the JVM jobs, the
Kafka connector and the value deserializer every job reads with) runs `bars` as a Java application; a zip of the
tradesim package, the jobs' third-party packages built for the service's Python, and that jar runs `execution`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisanalyticsv2 as flink
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as assets
from constructs import Construct

from tradesim.adapters.dynamodb.tables import OPEN_ORDERS, ORDERS, PORTFOLIOS
from tradesim.infra.artifact import JOBS_JAR, MAIN, PYLIB
from tradesim.infra.data import Data
from tradesim.infra.environments import Environment
from tradesim.infra.nag import accept
from tradesim.infra.network import Network
from tradesim.infra.settings_env import cloud_settings, env_vars
from tradesim.jobs.managed import ENV_GROUP, JOB_GROUP
from tradesim.stack.jobs import JOBS, JobSpec, job_args

#: the MSF runtime of the Flink the local stack runs (flink.version 2.2.x)
RUNTIME = "FLINK-2_2"
#: the tables each standard job writes (execution: the settle and the mirror; bars: none)
TABLES_OF: dict[str, tuple[str, ...]] = {"execution": (ORDERS, OPEN_ORDERS, PORTFOLIOS), "bars": ()}


def _properties(spec: JobSpec, settings: Any, env_group: dict[str, str]) -> list[Any]:
    """A job's runtime property groups: a JVM job names its class, a Python job its module, the run options and
    the TRADESIM_* settings its operators adopt (tradesim.jobs.managed)."""
    group = flink.CfnApplication.PropertyGroupProperty
    args = json.dumps(job_args(spec, settings))
    if spec.main_class:
        return [group(property_group_id=JOB_GROUP, property_map={"class": spec.main_class, "args": args})]
    return [group(property_group_id="kinesis.analytics.flink.run.options",
                  property_map={"python": MAIN, "jarfile": JOBS_JAR, "pyFiles": f"{PYLIB}/"}),
            group(property_group_id=JOB_GROUP, property_map={"module": spec.module, "args": args}),
            group(property_group_id=ENV_GROUP, property_map=env_group)]


class FlinkJobs(Construct):
    def __init__(self, scope: Construct, id: str, env: Environment, net: Network, data: Data,
                 shared: dict[str, Any], artifact: Path) -> None:
        super().__init__(scope, id)
        python_code = assets.Asset(self, "Code", path=str(artifact))
        jar_code = assets.Asset(self, "JobsJar", path=str(artifact / JOBS_JAR))  # a file: uploaded as it is
        code = {name: jar_code if JOBS[name].main_class else python_code for name in TABLES_OF}
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH)
        roles = {name: self._role(name, code[name], log_group, [data.tables[t] for t in tables], data)
                 for name, tables in TABLES_OF.items()}
        settings = cloud_settings(shared)
        env_group = env_vars(shared)
        parallelism = {"execution": env.execution_parallelism, "bars": env.bars_parallelism}
        self.applications: dict[str, flink.CfnApplication] = {}
        for spec in (s for s in JOBS.values() if s.standard):
            app = flink.CfnApplication(
                self, spec.name, application_name=f"tradesim-{env.name}-{spec.name}", runtime_environment=RUNTIME,
                service_execution_role=roles[spec.name].role_arn, application_description=spec.description,
                application_configuration=flink.CfnApplication.ApplicationConfigurationProperty(
                    application_code_configuration=flink.CfnApplication.ApplicationCodeConfigurationProperty(
                        code_content_type="ZIPFILE",
                        code_content=flink.CfnApplication.CodeContentProperty(
                            s3_content_location=flink.CfnApplication.S3ContentLocationProperty(
                                bucket_arn=code[spec.name].bucket.bucket_arn,
                                file_key=code[spec.name].s3_object_key))),
                    environment_properties=flink.CfnApplication.EnvironmentPropertiesProperty(
                        property_groups=_properties(spec, settings, env_group)),
                    flink_application_configuration=flink.CfnApplication.FlinkApplicationConfigurationProperty(
                        checkpoint_configuration=flink.CfnApplication.CheckpointConfigurationProperty(
                            configuration_type="CUSTOM", checkpointing_enabled=True,
                            checkpoint_interval=settings.flink.checkpoint_interval_ms,
                            min_pause_between_checkpoints=settings.flink.checkpoint_interval_ms // 5),
                        monitoring_configuration=flink.CfnApplication.MonitoringConfigurationProperty(
                            configuration_type="CUSTOM", log_level="INFO", metrics_level="APPLICATION"),
                        parallelism_configuration=flink.CfnApplication.ParallelismConfigurationProperty(
                            # a KPU (1 vCPU, 4 GB) per subtask: execution's Python stages are CPU-bound per record
                            configuration_type="CUSTOM", parallelism=parallelism[spec.name], parallelism_per_kpu=1,
                            auto_scaling_enabled=False)),
                    application_snapshot_configuration=flink.CfnApplication.ApplicationSnapshotConfigurationProperty(
                        snapshots_enabled=True),
                    vpc_configurations=[flink.CfnApplication.VpcConfigurationProperty(
                        subnet_ids=net.vpc.select_subnets(subnet_group_name="private").subnet_ids,
                        security_group_ids=[net.flink.security_group_id])]))
            # created after the role's policy, or the service finds no read access to the artifact
            app.node.add_dependency(roles[spec.name].node.find_child("DefaultPolicy"))
            stream = logs.LogStream(self, f"{spec.name}Stream", log_group=log_group, log_stream_name=spec.name)
            logging = flink.CfnApplicationCloudWatchLoggingOption(
                self, f"{spec.name}Logging", application_name=app.ref,
                cloud_watch_logging_option=flink.CfnApplicationCloudWatchLoggingOption.CloudWatchLoggingOptionProperty(
                    log_stream_arn=Stack.of(self).format_arn(
                        service="logs", resource="log-group",
                        resource_name=f"{log_group.log_group_name}:log-stream:{spec.name}",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME)))
            logging.node.add_dependency(stream)
            self.applications[spec.name] = app

    def _role(self, name: str, code: assets.Asset, log_group: logs.LogGroup, tables: list[dynamodb.Table],
              data: Data) -> iam.Role:
        """One application's role: its code, its log group, the tables it writes, its network interfaces."""
        role = iam.Role(self, f"{name}Role", assumed_by=iam.ServicePrincipal("kinesisanalytics.amazonaws.com"),
                        description=f"tradesim Flink application {name}")
        code.grant_read(role)
        for table in tables:
            table.grant_read_write_data(role)
        log_group.grant_write(role)
        role.add_to_policy(iam.PolicyStatement(actions=["logs:DescribeLogGroups", "logs:DescribeLogStreams"],
                                               resources=[log_group.log_group_arn]))
        # the applications run in the VPC: the service creates their network interfaces under this role
        role.add_to_policy(iam.PolicyStatement(
            actions=["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeDhcpOptions",
                     "ec2:DescribeNetworkInterfaces", "ec2:CreateNetworkInterface",
                     "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface"],
            resources=["*"]))
        accept(role, {
            **(data.index_findings() if tables else {}),
            "AwsSolutions-IAM5[Resource::*]": "the network-interface calls of a VPC application take no ARN",
            "AwsSolutions-IAM5[Action::s3:GetBucket*]": "CDK's asset grant: read of the one code artifact",
            "AwsSolutions-IAM5[Action::s3:GetObject*]": "CDK's asset grant: read of the one code artifact",
            "AwsSolutions-IAM5[Action::s3:List*]": "CDK's asset grant: read of the one code artifact",
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-"
            f"{Stack.of(self).region}/*]": "CDK's asset grant: the bootstrap bucket holds the artifact",
        })
        return role
