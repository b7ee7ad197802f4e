"""The tradesim services on ECS Fargate (the order API and market data behind one HTTPS load balancer that also
carries the WebSockets; persistence and the scenario feed) and ClickHouse on ECS on EC2 with an EBS volume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import CfnParameter, Duration, IgnoreMode, RemovalPolicy, Stack, Stage
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secrets
from constructs import Construct

from tradesim.adapters.dynamodb.tables import ACCOUNTS
from tradesim.infra.data import Data
from tradesim.infra.environments import Environment
from tradesim.infra.nag import accept
from tradesim.infra.network import CLICKHOUSE_HTTP_PORT, HTTPS_PORT, Network
from tradesim.infra.settings_env import cloud_settings, env_vars

REPO = Path(__file__).resolve().parents[2]
#: the image's build context is what docker/Dockerfile copies and the Dockerfile itself (.dockerignore rules: the
#: last pattern that matches decides); the rest of the checkout (CHANGELOG.md, a test's report, any untracked file)
#: stays out of the asset's hash, and so does the bytecode Python writes beside the sources it imports (else the
#: hash, and the template, changed whenever a module was first imported between two syntheses)
IMAGE_CONTEXT_EXCLUDE = ["*", "!pyproject.toml", "!README.md", "!tradesim", "!benchmarks", "!scenarios",
                         "!docker/Dockerfile", "**/__pycache__", "**/*.pyc"]
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:24.8"  # an LTS line that reads the adapter's DDL
CLICKHOUSE_DATA = "/data/clickhouse"
#: in a container the servers listen on the task's network interface, which the security groups guard
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
CONTAINER_HOME = "/tmp/tradesim"  # noqa: S108 - the container's own /tmp, nothing shares it


def image_exclude(outdir: Path) -> list[str]:
    """What the image's build context leaves out: an assembly folder inside the checkout too, which the asset would
    otherwise copy into itself, each copy holding the one before (until the path is too long)."""
    try:
        inside = outdir.resolve().relative_to(REPO)
    except ValueError:
        return IMAGE_CONTEXT_EXCLUDE
    return [*IMAGE_CONTEXT_EXCLUDE, inside.as_posix()]


ENV_SETTINGS = {"AwsSolutions-ECS2": "TRADESIM_* variables are how every tradesim process reads its settings; they "
                                     "hold endpoints and sizes, the secrets come from Secrets Manager"}


@dataclass(frozen=True)
class Task:
    name: str
    command: list[str]
    cpu: int
    memory_mib: int
    count: int
    #: settings of this task on top of the shared ones
    values: dict[str, Any]
    #: its secrets: TRADESIM_* variable → secret
    secrets: dict[str, secrets.ISecret]
    ports: list[int]


class Services(Construct):
    def __init__(self, scope: Construct, id: str, env: Environment, net: Network, data: Data,
                 clickhouse_url: str | None, clickhouse_user: str = "default") -> None:
        super().__init__(scope, id)
        self.cluster = ecs.Cluster(self, "Cluster", vpc=net.vpc, container_insights_v2=ecs.ContainerInsights.ENHANCED)
        self.clickhouse: ecs.Ec2Service | None = None
        if clickhouse_url is None:
            clickhouse_url = self._clickhouse(env, net, data)
        self.shared: dict[str, Any] = {
            "kafka": {"bootstrap_servers": data.kafka_bootstrap, "security_protocol": "SSL",
                      "partitions": env.kafka_partitions},
            "redis": {"url": data.redis_url},
            "dynamodb": {"use_aws": True, "region": Stack.of(self).region, "table_prefix": data.table_prefix},
            # a replica per further node (at most 2): zone awareness keeps a copy of the shard in another zone
            "opensearch": {"url": data.search_url, "replicas": min(env.search_nodes - 1, 2)},
            "clickhouse": {"url": clickhouse_url, "user": clickhouse_user},
            # state files (the API workers' metrics folder, `up`'s state) in the container's writable /tmp
            "home": CONTAINER_HOME,
        }
        local = cloud_settings(self.shared)
        self.ports = {"api": local.api.port, "ws": local.marketdata.ws_port,
                      "marketdata": local.marketdata.metrics_port}
        image = ecs.ContainerImage.from_asset(str(REPO), file="docker/Dockerfile",
                                              exclude=image_exclude(Path(Stage.of(self).outdir)),
                                              ignore_mode=IgnoreMode.DOCKER,
                                              platform=ecr_assets.Platform.LINUX_AMD64)
        clickhouse = {"TRADESIM_CLICKHOUSE__PASSWORD": data.clickhouse_password}
        tasks = [
            Task("api", _module("tradesim.services.api"), 1024, 2048, env.api_tasks,
                 {"api": {"host": ALL_INTERFACES}},
                 {**clickhouse, "TRADESIM_API__ADMIN_KEY": data.admin_key}, [local.api.port]),
            Task("marketdata", _module("tradesim.services.marketdata"), 1024, 2048, env.marketdata_tasks,
                 {"marketdata": {"host": ALL_INTERFACES}}, {},
                 [local.marketdata.ws_port, local.marketdata.metrics_port]),
            Task("persistence", _module("tradesim.services.persistence"), 512, 1024, env.persistence_tasks,
                 {"persistence": {"host": ALL_INTERFACES}}, clickhouse,
                 [local.persistence.metrics_port]),
            Task("market", _module("tradesim.services.market"), 256, 512, 1,
                 {"market": {"host": ALL_INTERFACES}, "scenarios_dir": "/app/scenarios"}, {},
                 [local.market.metrics_port]),
        ]
        groups = {"api": net.api, "marketdata": net.marketdata, "persistence": net.persistence, "market": net.market}
        self.services = {t.name: self._service(t, image, groups[t.name], net) for t in tasks}
        api_role = self.services["api"].task_definition.task_role
        for table in data.tables.values():
            table.grant_read_write_data(api_role)
        accept(self.services["api"].task_definition, data.index_findings())
        # the WebSocket's account channel looks keys up by their hash (Accounts' by_key_hash index)
        data.tables[ACCOUNTS].grant_read_data(self.services["marketdata"].task_definition.task_role)
        accept(self.services["marketdata"].task_definition, data.index_findings())
        self.init = self._definition(Task(
            "init", ["tradesim", "up", "--only", "kafka,opensearch,clickhouse"], 512, 1024, 0,
            {"stack": {"watchdog": False}}, clickhouse, []), image)
        net.admit(net.clickhouse, CLICKHOUSE_HTTP_PORT, net.api, net.persistence, net.init)
        self._load_balancer(net)

    def _definition(self, task: Task, image: ecs.ContainerImage) -> ecs.FargateTaskDefinition:
        definition = ecs.FargateTaskDefinition(self, f"{task.name}Task", cpu=task.cpu, memory_limit_mib=task.memory_mib)
        definition.add_container(
            task.name, image=image, command=task.command, environment=env_vars({**self.shared, **task.values}),
            secrets={name: ecs.Secret.from_secrets_manager(secret) for name, secret in task.secrets.items()},
            port_mappings=[ecs.PortMapping(container_port=p) for p in task.ports], logging=self._logs(task.name))
        accept(definition, ENV_SETTINGS)
        accept(definition.obtain_execution_role(), {
            "AwsSolutions-IAM5[Resource::*]": "the image pull's ecr:GetAuthorizationToken takes no ARN"})
        return definition

    def _service(self, task: Task, image: ecs.ContainerImage, group: ec2.SecurityGroup,
                 net: Network) -> ecs.FargateService:
        # the feed runs once: a rolling deployment's overlap would publish every tick twice
        single = task.name == "market"
        return ecs.FargateService(
            self, f"{task.name}Service", cluster=self.cluster, task_definition=self._definition(task, image),
            desired_count=task.count, security_groups=[group], vpc_subnets=net.private, assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            min_healthy_percent=0 if single else 100, max_healthy_percent=100 if single else 200)

    def _logs(self, name: str) -> ecs.LogDriver:
        group = logs.LogGroup(self, f"{name}Logs", retention=logs.RetentionDays.ONE_MONTH,
                              removal_policy=RemovalPolicy.DESTROY)
        return ecs.LogDrivers.aws_logs(stream_prefix=name, log_group=group)

    def _load_balancer(self, net: Network) -> None:
        certificate = CfnParameter(self, "CertificateArn", type="String",
                                   description="ACM certificate of the load balancer's HTTPS listener")
        logs_bucket = s3.Bucket(self, "AlbLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
                                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                                lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))])
        accept(logs_bucket, {"AwsSolutions-S1": "the access-log bucket itself: logging it would log the logging"})
        self.alb = elbv2.ApplicationLoadBalancer(self, "Alb", vpc=net.vpc, internet_facing=True,
                                                 security_group=net.alb, drop_invalid_header_fields=True)
        self.alb.log_access_logs(logs_bucket)
        api = elbv2.ApplicationTargetGroup(
            self, "ApiTargets", vpc=net.vpc, port=self.ports["api"], protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP, health_check=elbv2.HealthCheck(path="/healthz"))
        ws = elbv2.ApplicationTargetGroup(
            self, "WebSocketTargets", vpc=net.vpc, port=self.ports["ws"], protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            health_check=elbv2.HealthCheck(path="/metrics", port=str(self.ports["marketdata"])))
        self.services["api"].attach_to_application_target_group(api)
        self.services["marketdata"].attach_to_application_target_group(ws)
        self.target_groups = {"api": api, "marketdata": ws}
        listener = self.alb.add_listener(
            "Https", port=HTTPS_PORT, open=False, ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            certificates=[elbv2.ListenerCertificate.from_arn(certificate.value_as_string)],
            default_target_groups=[api])
        # one host name: a WebSocket upgrade goes to market data, everything else to the API
        listener.add_target_groups("WebSocket", priority=10, target_groups=[ws],
                                   conditions=[elbv2.ListenerCondition.http_header("Upgrade", ["websocket"])])
        net.admit(net.api, self.ports["api"], net.alb)
        net.admit(net.marketdata, self.ports["ws"], net.alb)
        net.admit(net.marketdata, self.ports["marketdata"], net.alb)

    def _clickhouse(self, env: Environment, net: Network, data: Data) -> str:
        # one host in one zone: its EBS volume lives there. The tables are a read model that `tradesim rebuild
        # analytics` replays from trade_executed, so a lost volume costs a rebuild, not data.
        hosts = autoscaling.AutoScalingGroup(
            self, "ClickHouseHosts", vpc=net.vpc,
            vpc_subnets=ec2.SubnetSelection(subnets=net.vpc.private_subnets[:1]),
            instance_type=ec2.InstanceType(env.clickhouse_instance),
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(), min_capacity=1, max_capacity=1,
            security_group=net.clickhouse, require_imdsv2=True,
            instance_monitoring=autoscaling.Monitoring.DETAILED,
            block_devices=[
                autoscaling.BlockDevice(device_name="/dev/xvda",
                                        volume=autoscaling.BlockDeviceVolume.ebs(30, encrypted=True)),
                autoscaling.BlockDevice(device_name="/dev/xvdb", volume=autoscaling.BlockDeviceVolume.ebs(
                    env.clickhouse_volume_gb, encrypted=True, volume_type=autoscaling.EbsDeviceVolumeType.GP3)),
            ])
        # on Nitro instances EBS volumes are NVMe devices numbered in no fixed order; the AMI's udev rules link the
        # mapping's name (/dev/xvdb) to the right one. Formatted once, mounted by its filesystem's UUID where the
        # task's volume is
        hosts.add_user_data(
            "dev=/dev/xvdb; [ -e $dev ] || dev=/dev/nvme1n1",
            "blkid $dev || mkfs -t xfs $dev",
            f"mkdir -p {CLICKHOUSE_DATA}",
            f"grep -q ' {CLICKHOUSE_DATA} ' /etc/fstab || "
            f"echo \"UUID=$(blkid -s UUID -o value $dev) {CLICKHOUSE_DATA} xfs defaults,nofail 0 2\" >> /etc/fstab",
            f"mount -a && chown 101:101 {CLICKHOUSE_DATA}",
        )
        accept(hosts, {
            "AwsSolutions-AS3": "one fixed instance under an ECS capacity provider; TradesimComponentDown-clickhouse "
                                "alarms when its task is not running",
            "AwsSolutions-IAM5[Action::ecs:Submit*]": "the ECS agent's own policy (CDK's container-instance role)",
            "AwsSolutions-IAM5[Resource::*]": "the ECS agent's own policy: its poll and telemetry calls take no ARN",
        })
        capacity = ecs.AsgCapacityProvider(self, "ClickHouseCapacity", auto_scaling_group=hosts,
                                           enable_managed_termination_protection=False, enable_managed_draining=True)
        self.cluster.add_asg_capacity_provider(capacity)
        namespace = self.cluster.add_default_cloud_map_namespace(name=f"tradesim-{env.name}.internal")
        definition = ecs.Ec2TaskDefinition(self, "ClickHouseTask", network_mode=ecs.NetworkMode.AWS_VPC)
        accept(definition, {"AwsSolutions-ECS2": "the server's user and database names; its password is a secret"})
        definition.add_volume(name="data", host=ecs.Host(source_path=CLICKHOUSE_DATA))
        local = cloud_settings({})
        server = definition.add_container(
            "clickhouse", image=ecs.ContainerImage.from_registry(CLICKHOUSE_IMAGE),
            memory_reservation_mib=2048, port_mappings=[ecs.PortMapping(container_port=CLICKHOUSE_HTTP_PORT)],
            environment={"CLICKHOUSE_USER": local.clickhouse.user, "CLICKHOUSE_DB": local.clickhouse.database},
            secrets={"CLICKHOUSE_PASSWORD": ecs.Secret.from_secrets_manager(data.clickhouse_password)},
            logging=self._logs("clickhouse"))
        server.add_mount_points(ecs.MountPoint(container_path="/var/lib/clickhouse", source_volume="data",
                                               read_only=False))
        self.clickhouse = ecs.Ec2Service(
            self, "ClickHouse", cluster=self.cluster, task_definition=definition, desired_count=1,
            security_groups=[net.clickhouse], vpc_subnets=ec2.SubnetSelection(subnets=net.vpc.private_subnets[:1]),
            min_healthy_percent=0, max_healthy_percent=100,
            capacity_provider_strategies=[ecs.CapacityProviderStrategy(
                capacity_provider=capacity.capacity_provider_name, weight=1)],
            cloud_map_options=ecs.CloudMapOptions(name="clickhouse"))
        return f"http://clickhouse.{namespace.namespace_name}:{CLICKHOUSE_HTTP_PORT}"


def _module(name: str) -> list[str]:
    return ["python", "-m", name]
