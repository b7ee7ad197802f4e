"""The VPC and one security group per component; a store admits only the groups of its clients, on its port."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from tradesim.infra.environments import Environment
from tradesim.infra.nag import accept

KAFKA_TLS_PORT = 9094
#: not 6379: the well-known port is the first one scanned (cdk-nag AwsSolutions-AEC5)
REDIS_PORT = 6390
HTTPS_PORT = 443
CLICKHOUSE_HTTP_PORT = 8123


class Network(Construct):
    def __init__(self, scope: Construct, id: str, env: Environment) -> None:
        super().__init__(scope, id)
        self.vpc = ec2.Vpc(
            self, "Vpc", max_azs=env.azs, nat_gateways=env.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
            ],
            flow_logs={"all": ec2.FlowLogOptions(
                traffic_type=ec2.FlowLogTrafficType.ALL,
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                    logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH)))},
        )
        # DynamoDB and the code artifacts in S3 without the NAT gateways
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

        def group(name: str, description: str) -> ec2.SecurityGroup:
            return ec2.SecurityGroup(self, name, vpc=self.vpc, description=description, allow_all_outbound=True)

        self.alb = group("Alb", "The public load balancer: HTTPS only")
        self.alb.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "HTTPS from anywhere")
        accept(self.alb, {"AwsSolutions-EC23": "the public entry: 443 only, the one port open to the internet"})
        self.api = group("Api", "Order API tasks")
        self.marketdata = group("MarketData", "Market-data (WebSocket) tasks")
        self.persistence = group("Persistence", "Persistence tasks")
        self.market = group("Market", "Scenario feed task")
        self.init = group("Init", "The one-off task that creates the topics, the search index and the tables")
        self.flink = group("Flink", "Managed Flink applications")
        self.kafka = group("Kafka", "MSK brokers")
        self.redis = group("Redis", "ElastiCache Redis")
        self.search = group("Search", "OpenSearch domain")
        self.clickhouse = group("ClickHouse", "ClickHouse tasks")

    def admit(self, store: ec2.SecurityGroup, port: int, *clients: ec2.SecurityGroup) -> None:
        for client in clients:
            store.add_ingress_rule(client, ec2.Port.tcp(port), f"from {client.node.id}")
