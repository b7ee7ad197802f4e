"""The stores: DynamoDB tables (the adapter's own definitions), MSK, ElastiCache Redis, OpenSearch, the secrets.
Everything at rest is encrypted with one customer-managed key; everything in transit with TLS."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_msk as msk
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import aws_secretsmanager as secrets
from aws_cdk import custom_resources as cr
from constructs import Construct

from tradesim.adapters.dynamodb.tables import TABLES, TableDef
from tradesim.adapters.redis.client import MAXMEMORY_POLICY
from tradesim.infra.environments import Environment
from tradesim.infra.nag import accept
from tradesim.infra.network import HTTPS_PORT, KAFKA_TLS_PORT, REDIS_PORT, Network

#: KRaft mode (".kraft"; plain "3.9.x" makes a ZooKeeper cluster, and a cluster never changes mode), as locally;
#: the clients need nothing newer
KAFKA_VERSION = "3.9.x.kraft"
REDIS_VERSION = "7.1"
_KEY_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


def _attribute(table: TableDef, name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=_KEY_TYPES[table.key_types[name]])


class Data(Construct):
    def __init__(self, scope: Construct, id: str, env: Environment, net: Network) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if env.protect_data else RemovalPolicy.DESTROY
        prefix = f"tradesim-{env.name}-"
        self.key = kms.Key(self, "DataKey", enable_key_rotation=True, removal_policy=removal,
                           description="tradesim: encryption at rest of every store")
        # CloudWatch publishes alarm notifications to the SNS topic this key encrypts
        self.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")

        self.table_prefix = prefix
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in TABLES:
            table = dynamodb.Table(
                self, spec.name, table_name=prefix + spec.name,
                partition_key=_attribute(spec, spec.hash_key),
                sort_key=_attribute(spec, spec.range_key) if spec.range_key else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True),
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=self.key,
                deletion_protection=env.protect_data, removal_policy=removal)
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name, partition_key=_attribute(spec, index.hash_key),
                    sort_key=_attribute(spec, index.range_key) if index.range_key else None,
                    projection_type=dynamodb.ProjectionType.ALL)
            self.tables[spec.name] = table

        self._kafka(env, net, removal)
        self._redis(env, net, removal)
        self._search(env, net, removal)
        self.admin_key = secrets.Secret(
            self, "AdminKey", description="tradesim order API admin key (api.admin_key)", encryption_key=self.key,
            generate_secret_string=secrets.SecretStringGenerator(exclude_punctuation=True, password_length=40))
        self.clickhouse_password = secrets.Secret(
            self, "ClickHousePassword", description="tradesim ClickHouse password (clickhouse.password)",
            encryption_key=self.key,
            generate_secret_string=secrets.SecretStringGenerator(exclude_punctuation=True, password_length=32))
        for secret in (self.admin_key, self.clickhouse_password):
            accept(secret, {"AwsSolutions-SMG4": "rotated by hand: the services read it once at start, so a rotation "
                                                 "is a deployment (new tasks), not a Lambda function"})

    def index_findings(self) -> dict[str, str]:
        """The IAM5 findings of a grant on the tables (CDK's own: index/* for the by_user and by_key_hash
        queries, and the tables' key), to acknowledge on the grantee."""
        stack = Stack.of(self)
        ids = [stack.resolve(stack.get_logical_id(t.node.default_child))  # type: ignore[arg-type]
               for t in self.tables.values()]
        return {
            **{f"AwsSolutions-IAM5[Resource::<{i}.Arn>/index/*]": "queries read the table's own indexes" for i in ids},
            "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": "CDK's table grant: the tables' key wraps data keys",
            "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": "CDK's table grant: re-encryption under the tables' key",
        }

    def _kafka(self, env: Environment, net: Network, removal: RemovalPolicy) -> None:
        broker_logs = logs.LogGroup(self, "KafkaBrokerLogs", retention=logs.RetentionDays.ONE_MONTH,
                                    removal_policy=removal)
        config = msk.CfnConfiguration(
            self, "KafkaConfig", name=f"tradesim-{env.name}", kafka_versions_list=[KAFKA_VERSION],
            # topics come only from the init task (their partitions and retention as locally), replicated on
            # every broker up to 3; a write needs all but one of the replicas
            server_properties="\n".join([
                "auto.create.topics.enable=false",
                f"default.replication.factor={min(env.kafka_brokers, 3)}",
                f"min.insync.replicas={max(1, min(env.kafka_brokers, 3) - 1)}",
                "unclean.leader.election.enable=false",
            ]))
        self.kafka = msk.CfnCluster(
            self, "Kafka", cluster_name=f"tradesim-{env.name}", kafka_version=KAFKA_VERSION,
            number_of_broker_nodes=env.kafka_brokers,
            broker_node_group_info=msk.CfnCluster.BrokerNodeGroupInfoProperty(
                instance_type=env.kafka_instance,
                client_subnets=net.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids,
                security_groups=[net.kafka.security_group_id],
                storage_info=msk.CfnCluster.StorageInfoProperty(
                    ebs_storage_info=msk.CfnCluster.EBSStorageInfoProperty(volume_size=env.kafka_volume_gb))),
            # the newest revision: a change of the server properties makes a new one, which a pinned 1 never applied
            configuration_info=msk.CfnCluster.ConfigurationInfoProperty(
                arn=config.attr_arn, revision=config.attr_latest_revision_revision),
            encryption_info=msk.CfnCluster.EncryptionInfoProperty(
                encryption_at_rest=msk.CfnCluster.EncryptionAtRestProperty(data_volume_kms_key_id=self.key.key_arn),
                encryption_in_transit=msk.CfnCluster.EncryptionInTransitProperty(client_broker="TLS", in_cluster=True)),
            # consumer lag per group and topic in CloudWatch: the TradesimConsumerLag alarms read it
            enhanced_monitoring="PER_TOPIC_PER_BROKER",
            logging_info=msk.CfnCluster.LoggingInfoProperty(broker_logs=msk.CfnCluster.BrokerLogsProperty(
                cloud_watch_logs=msk.CfnCluster.CloudWatchLogsProperty(enabled=True,
                                                                       log_group=broker_logs.log_group_name))))
        self.kafka.apply_removal_policy(removal)
        net.admit(net.kafka, KAFKA_TLS_PORT, net.api, net.marketdata, net.persistence, net.market, net.flink, net.init)
        # MSK has no CloudFormation attribute for its bootstrap list: one GetBootstrapBrokers call at deploy time
        brokers = cr.AwsCustomResource(
            self, "KafkaBootstrap",
            on_update=cr.AwsSdkCall(service="Kafka", action="getBootstrapBrokers",
                                    parameters={"ClusterArn": self.kafka.attr_arn},
                                    physical_resource_id=cr.PhysicalResourceId.of(self.kafka.attr_arn)),
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=[self.kafka.attr_arn]))
        self.kafka_bootstrap = brokers.get_response_field("BootstrapBrokerStringTls")

    def _redis(self, env: Environment, net: Network, removal: RemovalPolicy) -> None:
        subnets = elasticache.CfnSubnetGroup(
            self, "RedisSubnets", description="tradesim Redis",
            subnet_ids=net.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids)
        # as locally (redis.maxmemory_mb): a full Redis evicts only keys with a TTL, so orders go on
        parameters = elasticache.CfnParameterGroup(
            self, "RedisParameters", cache_parameter_group_family="redis7",
            description=f"tradesim: {MAXMEMORY_POLICY}", properties={"maxmemory-policy": MAXMEMORY_POLICY})
        self.redis = elasticache.CfnReplicationGroup(
            self, "Redis", replication_group_description=f"tradesim {env.name}: prices, holdings, idempotency",
            engine="redis", engine_version=REDIS_VERSION, cache_node_type=env.redis_node, port=REDIS_PORT,
            num_node_groups=1, replicas_per_node_group=env.redis_replicas,
            automatic_failover_enabled=env.redis_replicas > 0, multi_az_enabled=env.redis_replicas > 0,
            at_rest_encryption_enabled=True, kms_key_id=self.key.key_id, transit_encryption_enabled=True,
            cache_subnet_group_name=subnets.ref, security_group_ids=[net.redis.security_group_id],
            cache_parameter_group_name=parameters.ref,
            snapshot_retention_limit=7 if env.protect_data else 1)
        self.redis.apply_removal_policy(removal)  # as every other store: kept on `cdk destroy` where data is protected
        accept(self.redis, {"AwsSolutions-AEC6": "no AUTH token: redis.url would carry it in a plain variable; TLS and "
                                                 "a security group that admits only the API, market data and Flink"})
        net.admit(net.redis, REDIS_PORT, net.api, net.marketdata, net.market, net.flink)
        self.redis_url = f"rediss://{self.redis.attr_primary_end_point_address}:{REDIS_PORT}/0"

    def _search(self, env: Environment, net: Network, removal: RemovalPolicy) -> None:
        zones = min(env.azs, env.search_nodes)
        self.search = opensearch.Domain(
            self, "Search", version=opensearch.EngineVersion.open_search("2.19"),
            vpc=net.vpc, vpc_subnets=[ec2.SubnetSelection(subnets=net.vpc.private_subnets[:zones])],
            security_groups=[net.search],
            capacity=opensearch.CapacityConfig(
                data_nodes=env.search_nodes, data_node_instance_type=env.search_instance,
                master_nodes=env.search_masters or None,
                master_node_instance_type=env.search_instance if env.search_masters else None,
                multi_az_with_standby_enabled=False),
            zone_awareness=opensearch.ZoneAwarenessConfig(enabled=zones > 1, availability_zone_count=zones)
            if zones > 1 else opensearch.ZoneAwarenessConfig(enabled=False),
            ebs=opensearch.EbsOptions(volume_size=env.search_volume_gb, volume_type=ec2.EbsDeviceVolumeType.GP3),
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True, kms_key=self.key),
            node_to_node_encryption=True, enforce_https=True,
            logging=opensearch.LoggingOptions(slow_search_log_enabled=True, slow_index_log_enabled=True,
                                              app_log_enabled=True),
            removal_policy=removal)
        # the adapter does not sign requests: the network is the boundary (the domain is in the private subnets,
        # its security group admits only the API and persistence tasks)
        self.search.add_access_policies(iam.PolicyStatement(
            actions=["es:ESHttp*"], principals=[iam.AnyPrincipal()], resources=[self.search.domain_arn + "/*"]))
        net.admit(net.search, HTTPS_PORT, net.api, net.persistence, net.init)
        accept(self.search, {
            "AwsSolutions-OS3": "in the private subnets: its security group, not an IP list, decides who reaches it",
            "AwsSolutions-OS5": "unsigned requests (the adapter does not sign); the group admits API and persistence",
            "AwsSolutions-IAM5[Resource::*]": "CDK's log-publishing policy: CloudWatch resource policies have no ARN",
        })
        if not env.search_masters:
            accept(self.search, {"AwsSolutions-OS4": f"{env.name}: two data nodes, no dedicated masters (prod has 3)"})
        self.search_url = f"https://{self.search.domain_endpoint}:{HTTPS_PORT}"
