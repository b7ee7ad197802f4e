"""The sizes of each deployment environment: the only values that differ between `--env dev` and `--env prod`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Environment:
    name: str
    #: availability zones of the VPC; prod spreads every store over 3
    azs: int
    nat_gateways: int
    kafka_brokers: int
    kafka_instance: str
    kafka_volume_gb: int
    #: partitions of each topic; the local stack's default is 6 (kafka.partitions)
    kafka_partitions: int
    redis_node: str
    redis_replicas: int
    search_instance: str
    search_nodes: int
    search_masters: int
    search_volume_gb: int
    clickhouse_instance: str
    clickhouse_volume_gb: int
    api_tasks: int
    marketdata_tasks: int
    persistence_tasks: int
    #: parallelism of the Flink applications, one KPU (1 vCPU, 4 GB) per subtask
    execution_parallelism: int
    bars_parallelism: int
    #: deletion protection and retained data on `cdk destroy`
    protect_data: bool


ENVIRONMENTS: dict[str, Environment] = {
    env.name: env
    for env in (
        Environment(
            name="dev", azs=2, nat_gateways=1,
            kafka_brokers=2, kafka_instance="kafka.t3.small", kafka_volume_gb=100, kafka_partitions=6,
            redis_node="cache.t4g.small", redis_replicas=1,
            search_instance="t3.medium.search", search_nodes=2, search_masters=0, search_volume_gb=20,
            clickhouse_instance="t3.large", clickhouse_volume_gb=50,
            api_tasks=1, marketdata_tasks=1, persistence_tasks=1,
            execution_parallelism=1, bars_parallelism=1,
            protect_data=False,
        ),
        Environment(
            name="prod", azs=3, nat_gateways=3,
            kafka_brokers=3, kafka_instance="kafka.m7g.large", kafka_volume_gb=500, kafka_partitions=12,
            redis_node="cache.r7g.large", redis_replicas=2,
            search_instance="r7g.large.search", search_nodes=3, search_masters=3, search_volume_gb=200,
            clickhouse_instance="r7i.xlarge", clickhouse_volume_gb=500,
            api_tasks=3, marketdata_tasks=2, persistence_tasks=2,
            execution_parallelism=4, bars_parallelism=1,  # bars: the JVM job, ~50,000 ticks/s a subtask
            protect_data=True,
        ),
    )
}
