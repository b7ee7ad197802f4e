"""CloudWatch alarms mirroring the stack's Prometheus alert rules (tradesim/stack/rules), one or more per rule,
named `tradesim-<env>-<rule>[-<subject>]`; every alarm notifies one encrypted SNS topic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk.aws_elasticloadbalancingv2 import HttpCodeTarget
from constructs import Construct

from tradesim.infra.data import Data
from tradesim.infra.environments import Environment
from tradesim.infra.flink import FlinkJobs
from tradesim.infra.services import Services
from tradesim.settings import Settings
from tradesim.stack.exporter import consumer_groups
from tradesim.stack.prometheus import RULE_FILES, RULES_DIR

#: rules about the local stack's own machinery, which has no counterpart on AWS
NOT_ON_AWS = {
    "TradesimWatchdogRestarts": "no watchdog: ECS and the Flink service replace what dies, which "
                                "TradesimComponentDown and TradesimJobRestarting see",
    "TradesimMetricsSourceDown": "no exporter: CloudWatch collects every metric the alarms read itself",
}
#: published by nothing yet: the services expose Prometheus metrics only (a CloudWatch agent or ADOT collector
#: sidecar would turn tradesim_order_outcome_seconds into it); the alarm shows INSUFFICIENT_DATA until then
ORDER_OUTCOME_METRIC = ("Tradesim", "OrderOutcomeP99Seconds")


def alert_rules(files: tuple[Path, ...] = tuple(RULES_DIR / name for name in RULE_FILES)) -> list[str]:
    """The names of the alert rules Prometheus evaluates locally."""
    names: list[str] = []
    for path in files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


class Alarms(Construct):
    def __init__(self, scope: Construct, id: str, env: Environment, data: Data, services: Services,
                 jobs: FlinkJobs, settings: Settings) -> None:
        super().__init__(scope, id)
        self.env, self.data, self.services, self.jobs, self.settings = env, data, services, jobs, settings
        self.topic = sns.Topic(self, "Alarms", display_name=f"tradesim {env.name} alarms", master_key=data.key,
                               enforce_ssl=True)
        self.alarms: dict[str, list[cw.Alarm]] = {}
        mirrors: dict[str, Callable[[], None]] = {
            "TradesimComponentDown": self._component_down, "TradesimScrapeFailing": self._scrape_failing,
            "TradesimApi5xx": self._api_5xx, "TradesimOrderOutcomeSlow": self._order_outcome_slow,
            "TradesimConsumerLag": self._consumer_lag, "TradesimJobRestarting": self._job_restarting,
            "TradesimJobNotRunning": self._job_not_running, "TradesimRedisWritesRefused": self._redis_refusing,
            "TradesimDiskLow": self._disk_low,
        }
        for rule in alert_rules():
            if rule in mirrors:
                self._rule = rule
                mirrors[rule]()
            elif rule not in NOT_ON_AWS:
                raise ValueError(f"alert rule {rule} has no CloudWatch mirror: add one to {__name__}")

    def _alarm(self, subject: str | None, metric: cw.IMetric, threshold: float, periods: int = 1,
               comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
               missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING) -> None:
        name = f"tradesim-{self.env.name}-{self._rule}" + (f"-{subject}" if subject else "")
        alarm = cw.Alarm(self, name, alarm_name=name, metric=metric, threshold=threshold,
                         evaluation_periods=periods, comparison_operator=comparison, treat_missing_data=missing,
                         alarm_description=f"mirrors the Prometheus alert {self._rule}")
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.setdefault(self._rule, []).append(alarm)

    def _component_down(self) -> None:
        cluster = self.services.cluster.cluster_name
        tasks = {**self.services.services, **({"clickhouse": self.services.clickhouse}
                                              if self.services.clickhouse else {})}
        for name, service in tasks.items():
            self._alarm(name, cw.Metric(
                namespace="ECS/ContainerInsights", metric_name="RunningTaskCount", statistic="Minimum",
                dimensions_map={"ClusterName": cluster, "ServiceName": service.service_name},
                period=Duration.minutes(1)), 1, comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cw.TreatMissingData.BREACHING)

    def _scrape_failing(self) -> None:
        for name, group in self.services.target_groups.items():
            self._alarm(name, group.metrics.unhealthy_host_count(period=Duration.minutes(1), statistic="Maximum"), 0)

    def _api_5xx(self) -> None:
        m = self.services.alb.metrics
        minute = Duration.minutes(1)
        # the local rule: more than 1 % of requests and more than 0.5 per second
        self._alarm(None, cw.MathExpression(
            expression="IF(errors > 30, errors / requests, 0)", period=minute,
            using_metrics={"errors": m.http_code_target(HttpCodeTarget.TARGET_5XX_COUNT, period=minute,
                                                        statistic="Sum"),
                           "requests": m.request_count(period=minute, statistic="Sum")}), 0.01)

    def _order_outcome_slow(self) -> None:
        namespace, metric = ORDER_OUTCOME_METRIC
        self._alarm(None, cw.Metric(namespace=namespace, metric_name=metric, statistic="Maximum",
                                    period=Duration.minutes(1)), 2, periods=2,
                    missing=cw.TreatMissingData.MISSING)

    def _consumer_lag(self) -> None:
        for group, topic in consumer_groups(self.settings):
            self._alarm(group, cw.Metric(
                namespace="AWS/Kafka", metric_name="SumOffsetLag", statistic="Maximum", period=Duration.minutes(1),
                dimensions_map={"Cluster Name": self.data.kafka.cluster_name, "Consumer Group": group,
                                "Topic": topic}), 10_000, periods=2)

    def _job_restarting(self) -> None:
        for name, app in self.jobs.applications.items():
            restarts = cw.Metric(namespace="AWS/KinesisAnalytics", metric_name="numRestarts", statistic="Maximum",
                                 dimensions_map={"Application": app.ref}, period=Duration.minutes(10))
            self._alarm(name, cw.MathExpression(expression="DIFF(restarts)", using_metrics={"restarts": restarts},
                                                period=Duration.minutes(10)), 0)

    def _job_not_running(self) -> None:
        for name, app in self.jobs.applications.items():
            self._alarm(name, cw.Metric(namespace="AWS/KinesisAnalytics", metric_name="downtime",
                                        statistic="Maximum", dimensions_map={"Application": app.ref},
                                        period=Duration.minutes(1)), 0, missing=cw.TreatMissingData.BREACHING)

    def _redis_refusing(self) -> None:
        # ElastiCache publishes no count of refused writes, and Evictions are the normal state at the cap: the alarm
        # is the state in which Redis refuses them, at its cap (as volatile-lru counts memory) with no key that
        # carries a TTL left to evict; on the primary's node of the one shard
        node = {"CacheClusterId": f"{self.data.redis.ref}-001"}
        minute = Duration.minutes(1)
        self._alarm(None, cw.MathExpression(
            expression="IF(used >= 100 AND volatile == 0, 1, 0)", period=minute,
            using_metrics={"used": cw.Metric(namespace="AWS/ElastiCache", statistic="Maximum", period=minute,
                                             metric_name="DatabaseMemoryUsageCountedForEvictPercentage",
                                             dimensions_map=node),
                           "volatile": cw.Metric(namespace="AWS/ElastiCache", metric_name="CurrVolatileItems",
                                                 statistic="Minimum", period=minute, dimensions_map=node)}), 0)

    def _disk_low(self) -> None:
        for broker in range(1, self.env.kafka_brokers + 1):
            self._alarm(f"kafka-{broker}", cw.Metric(
                namespace="AWS/Kafka", metric_name="KafkaDataLogsDiskUsed", statistic="Maximum",
                period=Duration.minutes(1),
                dimensions_map={"Cluster Name": self.data.kafka.cluster_name, "Broker ID": str(broker)}), 90)
        free_mb = self.env.search_volume_gb * 1024 * 0.1
        self._alarm("search", self.data.search.metric_free_storage_space(period=Duration.minutes(1),
                                                                         statistic="Minimum"),
                    free_mb, comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD)
