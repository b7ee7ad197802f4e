"""The whole system as one CloudFormation stack per environment."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, CfnResource, Fn, Stack, Tags
from aws_cdk import Environment as AwsEnvironment
from constructs import Construct

from tradesim.infra.alarms import Alarms
from tradesim.infra.data import Data
from tradesim.infra.environments import Environment
from tradesim.infra.flink import FlinkJobs
from tradesim.infra.nag import accept
from tradesim.infra.network import Network
from tradesim.infra.services import Services
from tradesim.infra.settings_env import cloud_settings

#: the construct id CDK gives the one function behind every AwsCustomResource of a stack
CUSTOM_RESOURCE_FUNCTION = "AWS679f53fac002430cb0da5b7982bd2287"


class TradesimStack(Stack):
    def __init__(self, scope: Construct, id: str, *, env: Environment, region: str, artifact: Path,
                 clickhouse_url: str | None = None, clickhouse_user: str = "default") -> None:
        super().__init__(scope, id, env=AwsEnvironment(region=region),
                         description=f"tradesim {env.name}: the trading simulator on managed engines")
        Tags.of(self).add("project", "tradesim")
        Tags.of(self).add("environment", env.name)
        self.net = Network(self, "Network", env)
        self.data = Data(self, "Data", env, self.net)
        self.services = Services(self, "Services", env, self.net, self.data, clickhouse_url, clickhouse_user)
        self.jobs = FlinkJobs(self, "Flink", env, self.net, self.data, self.services.shared, artifact)
        self.alarms = Alarms(self, "Alarms", env, self.data, self.services, self.jobs,
                             cloud_settings(self.services.shared))
        CfnOutput(self, "LoadBalancer", value=self.services.alb.load_balancer_dns_name,
                  description="point the DNS name the CertificateArn certificate is for at it (a CNAME or alias): "
                              "https://NAME is api.url and wss://NAME marketdata.ws_url for the CLI and TUI")
        CfnOutput(self, "AlarmTopic", value=self.alarms.topic.topic_arn)
        CfnOutput(self, "InitTask", value=self.services.init.task_definition_arn,
                  description="run once after the first deployment (and after adding a topic): creates the Kafka "
                              "topics, the search index and the ClickHouse tables; on Cluster, in InitSubnets, "
                              "with InitSecurityGroup (the only group besides the services' the stores admit)")
        CfnOutput(self, "Cluster", value=self.services.cluster.cluster_name)
        CfnOutput(self, "InitSubnets", value=Fn.join(",", self.net.vpc.select_subnets(
            subnet_type=self.net.private.subnet_type).subnet_ids))
        CfnOutput(self, "InitSecurityGroup", value=self.net.init.security_group_id)
        CfnOutput(self, "ClickHousePasswordSecret", value=self.data.clickhouse_password.secret_arn,
                  description="the services' ClickHouse password (with --clickhouse-url: set it to that server's)")
        # the one Lambda function behind every AwsCustomResource (here: MSK's bootstrap list, OpenSearch's log
        # policy); CDK builds it at the stack's root
        custom_resources = self.node.find_child(CUSTOM_RESOURCE_FUNCTION)
        accept(custom_resources, {
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]":
                "CDK's custom-resource functions: logging only, the AWS managed policy is that and nothing more",
            "AwsSolutions-IAM5[Action::kms:Describe*]": "the key lookups of the SDK calls CDK's custom resources make",
            "AwsSolutions-IAM5[Action::kms:List*]": "the key lookups of the SDK calls CDK's custom resources make",
        })
        function = custom_resources.node.default_child
        if not isinstance(function, CfnResource):
            raise TypeError(f"{CUSTOM_RESOURCE_FUNCTION} is not the custom-resource function CDK used to build")
        # CDK writes both a GetAtt of its role and a DependsOn on it; cfn-lint's W3005 calls the second redundant
        function.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})

    @property
    def availability_zones(self) -> list[str]:
        # the region's first three zones, resolved at deploy time (an account-agnostic stack gets two by default)
        return [Fn.select(i, Fn.get_azs()) for i in range(3)]
