"""The synthesized templates: encryption at rest, the only open port, point-in-time recovery, the alarms, the
tables and settings the local stack uses, cdk-nag and cfn-lint clean."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.unit.infra.conftest import Synthesized, stand_in_jar, synthesize_for_test
from tradesim.adapters.dynamodb.tables import TABLES
from tradesim.infra import nag
from tradesim.infra.alarms import NOT_ON_AWS, alert_rules
from tradesim.jobs.managed import ENV_GROUP, JOB_GROUP
from tradesim.settings import Settings
from tradesim.stack.jobs import JOBS

ANYWHERE = ("0.0.0.0/0", "::/0")


def _settings_names() -> set[str]:
    """Every TRADESIM_* variable the settings object reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            names |= {f"TRADESIM_{name.upper()}__{key.upper()}" for key in model.model_fields}
        else:
            names.add(f"TRADESIM_{name.upper()}")
    return names


def test_every_store_is_encrypted_at_rest(synthesized: Synthesized) -> None:
    cdk = synthesized.cdk
    cdk.all_resources_properties("AWS::DynamoDB::Table", {"SSESpecification": Match.object_like(
        {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()})})
    cdk.all_resources_properties("AWS::ElastiCache::ReplicationGroup", {
        "AtRestEncryptionEnabled": True, "TransitEncryptionEnabled": True})
    cdk.all_resources_properties("AWS::OpenSearchService::Domain", {
        "EncryptionAtRestOptions": Match.object_like({"Enabled": True}),
        "NodeToNodeEncryptionOptions": {"Enabled": True}})
    cdk.all_resources_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    for cluster in synthesized.properties("AWS::MSK::Cluster"):
        assert "DataVolumeKMSKeyId" in cluster["EncryptionInfo"]["EncryptionAtRest"]
        assert cluster["EncryptionInfo"]["EncryptionInTransit"] == {"ClientBroker": "TLS", "InCluster": True}
    for secret in synthesized.properties("AWS::SecretsManager::Secret"):
        assert "KmsKeyId" in secret
    for topic in synthesized.properties("AWS::SNS::Topic"):
        assert "KmsMasterKeyId" in topic
    for bucket in synthesized.properties("AWS::S3::Bucket"):
        assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    for template in synthesized.properties("AWS::EC2::LaunchTemplate"):
        devices = template["LaunchTemplateData"]["BlockDeviceMappings"]
        assert len(devices) == 2
        assert all(d["Ebs"]["Encrypted"] is True for d in devices)


def test_only_the_load_balancer_takes_traffic_from_anywhere_and_only_on_443(synthesized: Synthesized) -> None:
    groups = synthesized.of_type("AWS::EC2::SecurityGroup")
    rules: list[tuple[str, dict[str, Any]]] = [
        (name, rule) for name, group in groups.items() for rule in group["Properties"].get("SecurityGroupIngress", [])]
    rules += [(r["Properties"]["GroupId"]["Fn::GetAtt"][0], r["Properties"])
              for r in synthesized.resources.values() if r["Type"] == "AWS::EC2::SecurityGroupIngress"]
    open_rules = [(name, rule) for name, rule in rules if rule.get("CidrIp") in ANYWHERE
                  or rule.get("CidrIpv6") in ANYWHERE]
    assert len(open_rules) == 1
    (name, rule), = open_rules
    assert name.startswith("NetworkAlb")
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (443, 443, "tcp")
    synthesized.cdk.resource_count_is("AWS::ElasticLoadBalancingV2::Listener", 1)
    synthesized.cdk.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {"Port": 443,
                                                                                      "Protocol": "HTTPS"})


def test_the_tables_are_the_adapters_with_point_in_time_recovery(synthesized: Synthesized) -> None:
    synthesized.cdk.resource_count_is("AWS::DynamoDB::Table", len(TABLES))
    synthesized.cdk.all_resources_properties("AWS::DynamoDB::Table", {
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}, "BillingMode": "PAY_PER_REQUEST"})
    tables = {t["TableName"]: t for t in synthesized.properties("AWS::DynamoDB::Table")}
    prefix = f"tradesim-{synthesized.result.stack.node.id.removeprefix('tradesim-')}-"  # type: ignore[attr-defined]
    assert set(tables) == {prefix + spec.name for spec in TABLES}
    for spec in TABLES:
        table = tables[prefix + spec.name]
        assert table["KeySchema"] == [{"AttributeName": spec.hash_key, "KeyType": "HASH"}] + (
            [{"AttributeName": spec.range_key, "KeyType": "RANGE"}] if spec.range_key else [])
        indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {i.name for i in spec.indexes}
        for index in spec.indexes:
            keys = [(k["AttributeName"], k["KeyType"]) for k in indexes[index.name]["KeySchema"]]
            assert keys == [(index.hash_key, "HASH")] + ([(index.range_key, "RANGE")] if index.range_key else [])
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        assert types == spec.key_types


def test_every_alert_rule_has_its_alarms_or_a_reason(synthesized: Synthesized) -> None:
    env = synthesized.result.stack.node.id  # type: ignore[attr-defined]
    names = [a["AlarmName"] for a in synthesized.properties("AWS::CloudWatch::Alarm")]
    rules = alert_rules()
    assert set(NOT_ON_AWS) < set(rules)
    for rule in rules:
        mirrored = [n for n in names if n == f"{env}-{rule}" or n.startswith(f"{env}-{rule}-")]
        assert bool(mirrored) != (rule in NOT_ON_AWS), rule
    for alarm in synthesized.properties("AWS::CloudWatch::Alarm"):  # each publishes somewhere
        assert alarm["AlarmActions"], alarm["AlarmName"]


def test_a_finding_nobody_acknowledged_fails_the_synthesis(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    class Deaf:
        @staticmethod
        def of(_: object) -> Deaf:
            return Deaf()

        def acknowledge(self, *_: object) -> None:
            pass

    monkeypatch.setattr(nag, "Validations", Deaf)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synthesize_for_test("dev", tmp_path / "cdk.out")


def test_cfn_lint_is_clean(synthesized: Synthesized) -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(synthesized.result.template, config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


#: (client security group, store security group, port): what each task reaches (see tradesim/services/*)
REACHES = [
    *((client, "Kafka", 9094) for client in ("Api", "MarketData", "Persistence", "Market", "Flink", "Init")),
    *((client, "Redis", 6390) for client in ("Api", "MarketData", "Market", "Flink")),
    *((client, "Search", 443) for client in ("Api", "Persistence", "Init")),
    *((client, "ClickHouse", 8123) for client in ("Api", "Persistence", "Init")),
    ("Alb", "Api", 8080), ("Alb", "MarketData", 8765), ("Alb", "MarketData", 9108),
]


def test_each_task_reaches_the_stores_it_uses_and_no_other(dev: Synthesized) -> None:
    def group(ref: dict[str, Any]) -> str:
        name = ref["Fn::GetAtt"][0]
        return name.removeprefix("Network").rstrip("0123456789ABCDEF")

    found = {(group(r["SourceSecurityGroupId"]), group(r["GroupId"]), r["FromPort"])
             for r in dev.properties("AWS::EC2::SecurityGroupIngress") if "SourceSecurityGroupId" in r}
    assert found == set(REACHES)


def _policy_actions(s: Synthesized, role_prefix: str) -> dict[str, set[str]]:
    """Action → the resources' logical names of the inline policies of the role whose logical id starts so."""
    out: dict[str, set[str]] = {}
    for policy in s.properties("AWS::IAM::Policy"):
        if not any(r["Ref"].startswith(role_prefix) for r in policy["Roles"]):
            continue
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            names = {json.dumps(r).split('"')[3] if isinstance(r, dict) else r for r in resources}
            for action in actions:
                out.setdefault(action, set()).update(names)
    return out


def test_each_role_gets_the_tables_it_uses(dev: Synthesized) -> None:
    def tables(role_prefix: str, action: str) -> set[str]:
        names = _policy_actions(dev, role_prefix).get(action, set())
        return {n.removeprefix("Data").rstrip("0123456789ABCDEF") for n in names if n.startswith("Data")
                and not n.startswith("DataDataKey")}

    assert tables("ServicesapiTaskTaskRole", "dynamodb:PutItem") == {"Accounts", "OpenOrders", "Orders", "Portfolios"}
    assert tables("ServicesmarketdataTaskTaskRole", "dynamodb:Query") == {"Accounts"}
    assert tables("ServicesmarketdataTaskTaskRole", "dynamodb:PutItem") == set()
    assert tables("FlinkexecutionRole", "dynamodb:UpdateItem") == {"OpenOrders", "Orders", "Portfolios"}
    assert not any(a.startswith("dynamodb:") for a in _policy_actions(dev, "FlinkbarsRole"))
    for prefix in ("ServicespersistenceTask", "ServicesmarketTask"):
        assert not any(a.startswith("dynamodb:") for a in _policy_actions(dev, prefix))


def test_alarms_can_reach_their_encrypted_topic(dev: Synthesized) -> None:
    (key,) = dev.properties("AWS::KMS::Key")
    grants = [st for st in key["KeyPolicy"]["Statement"]
              if st.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"]
    assert grants
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= {a for st in grants for a in st["Action"]}


def test_redis_evicts_only_keys_with_a_ttl_as_locally(dev: Synthesized) -> None:
    (parameters,) = dev.properties("AWS::ElastiCache::ParameterGroup")
    assert parameters["Properties"] == {"maxmemory-policy": "volatile-lru"}
    (redis,) = dev.of_type("AWS::ElastiCache::ReplicationGroup").values()
    assert redis["Properties"]["CacheParameterGroupName"]["Ref"].startswith("DataRedisParameters")


def test_the_redis_alarm_is_writes_refused_not_memory_at_the_cap(dev: Synthesized) -> None:
    """At the cap volatile-lru evicts keys with a TTL and orders go on: the alarm is the cap with none left."""
    (alarm,) = [a for a in dev.properties("AWS::CloudWatch::Alarm") if "Redis" in a["AlarmName"]]
    assert alarm["AlarmName"].endswith("-TradesimRedisWritesRefused")
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    assert metrics["expr_1"]["Expression"] == "IF(used >= 100 AND volatile == 0, 1, 0)"
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m} == {
        "DatabaseMemoryUsageCountedForEvictPercentage", "CurrVolatileItems"}


def test_topics_come_from_the_init_task_only(dev: Synthesized) -> None:
    (config,) = dev.properties("AWS::MSK::Configuration")
    assert "auto.create.topics.enable=false" in config["ServerProperties"].splitlines()
    containers = {c["Name"]: c for t in dev.properties("AWS::ECS::TaskDefinition") for c in t["ContainerDefinitions"]}
    assert containers["init"]["Command"] == ["tradesim", "up", "--only", "kafka,opensearch,clickhouse"]
    env = {e["Name"]: e["Value"] for e in containers["init"]["Environment"]}
    assert env["TRADESIM_STACK__WATCHDOG"] == "false"


def test_the_feed_never_runs_twice(dev: Synthesized) -> None:
    services = {r["Properties"]["TaskDefinition"]["Ref"]: r["Properties"]
                for r in dev.of_type("AWS::ECS::Service").values()}
    (feed,) = [p for ref, p in services.items() if ref.startswith("ServicesmarketTask")]
    config = feed["DeploymentConfiguration"]
    assert (config["MinimumHealthyPercent"], config["MaximumPercent"]) == (0, 100)


def test_the_services_read_real_settings_and_get_their_secrets_from_secrets_manager(dev: Synthesized) -> None:
    known = _settings_names()
    containers = {c["Name"]: c for t in dev.properties("AWS::ECS::TaskDefinition") for c in t["ContainerDefinitions"]}
    assert {"api", "marketdata", "persistence", "market", "clickhouse", "init"} <= set(containers)
    for name, container in containers.items():
        env = {e["Name"] for e in container.get("Environment", [])}
        if name != "clickhouse":
            assert env - known == set(), name
            assert {"TRADESIM_KAFKA__SECURITY_PROTOCOL", "TRADESIM_DYNAMODB__USE_AWS"} <= env
    api_env = {e["Name"]: e["Value"] for e in containers["api"]["Environment"]}
    assert api_env["TRADESIM_KAFKA__SECURITY_PROTOCOL"] == "SSL"
    assert api_env["TRADESIM_DYNAMODB__TABLE_PREFIX"] == "tradesim-dev-"
    assert api_env["TRADESIM_API__HOST"] == "0.0.0.0"  # noqa: S104 - the task's interface, behind its group
    secrets = {s["Name"] for s in containers["api"]["Secrets"]}
    assert secrets == {"TRADESIM_API__ADMIN_KEY", "TRADESIM_CLICKHOUSE__PASSWORD"}
    assert "Secrets" not in containers["marketdata"]  # what a service does not use, it does not get
    assert not any("PASSWORD" in e or "KEY" in e for e in api_env)


def test_websocket_upgrades_go_to_market_data_everything_else_to_the_api(dev: Synthesized) -> None:
    (rule,) = dev.properties("AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["Conditions"] == [{"Field": "http-header", "HttpHeaderConfig": {
        "HttpHeaderName": "Upgrade", "Values": ["websocket"]}}]
    target = rule["Actions"][0]["TargetGroupArn"]["Ref"]
    assert target.startswith("ServicesWebSocketTargets")
    (listener,) = dev.properties("AWS::ElasticLoadBalancingV2::Listener")
    assert listener["DefaultActions"][0]["TargetGroupArn"]["Ref"].startswith("ServicesApiTargets")


def test_the_standard_jobs_run_on_managed_flink_with_their_catalog_arguments(synthesized: Synthesized) -> None:
    apps = {a["ApplicationName"].rsplit("-", 1)[1]: a
            for a in synthesized.properties("AWS::KinesisAnalyticsV2::Application")}
    assert set(apps) == {name for name, spec in JOBS.items() if spec.standard}
    known = _settings_names()
    for name, app in apps.items():
        spec = JOBS[name]
        assert app["RuntimeEnvironment"] == "FLINK-2_2"
        groups = {g["PropertyGroupId"]: g["PropertyMap"]
                  for g in app["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]}
        key = json.dumps(app["ApplicationConfiguration"]["ApplicationCodeConfiguration"]["CodeContent"])
        if spec.main_class:  # a Java application: the jobs jar, whose Main-Class reads the job's class and args
            assert set(groups) == {JOB_GROUP}
            assert groups[JOB_GROUP]["class"] == spec.main_class
            assert ".jar" in key
        else:  # PyFlink: main.py, the jobs jar for the connector, the vendored packages for every worker
            assert groups["kinesis.analytics.flink.run.options"] == {
                "python": "main.py", "jarfile": "lib/tradesim-jobs.jar", "pyFiles": "pylib/"}
            assert groups[JOB_GROUP]["module"] == spec.module
            assert set(groups[ENV_GROUP]) <= known
            assert ".zip" in key
        args = json.dumps(groups[JOB_GROUP]["args"])  # a Fn::Join: the bootstrap list is resolved at deploy time
        assert "--kafka-security-protocol" in args
        assert "SSL" in args
        assert "--bootstrap" in args
        if name == "execution":  # thread mode is set by the job: the service takes no cluster configuration
            assert 'python-execution-mode\\", \\"thread' in args
        assert app["ApplicationConfiguration"]["ApplicationSnapshotConfiguration"]["SnapshotsEnabled"] is True


def test_prod_spreads_over_three_zones_and_protects_its_data(prod: Synthesized, dev: Synthesized) -> None:
    assert len(prod.of_type("AWS::EC2::Subnet")) == 6
    assert len(dev.of_type("AWS::EC2::Subnet")) == 4
    (domain,) = prod.properties("AWS::OpenSearchService::Domain")
    assert domain["ClusterConfig"]["DedicatedMasterCount"] == 3
    assert all(t["DeletionProtectionEnabled"] is True for t in prod.properties("AWS::DynamoDB::Table"))
    assert all(r["DeletionPolicy"] == "Retain" for r in prod.of_type("AWS::DynamoDB::Table").values())
    assert all(r["DeletionPolicy"] == "Delete" for r in dev.of_type("AWS::DynamoDB::Table").values())


def test_the_code_artifact_holds_the_package_its_packages_and_the_jobs_jar(dev: Synthesized) -> None:
    staged, built = dev.result.artifact, dev.result.outdir.parent
    assert staged.parent == dev.result.outdir  # before: beside it, replacing whatever folder had its name
    main = (staged / "main.py").read_text()
    assert "tradesim.jobs.managed import main" in main
    assert '"pylib"' in main
    pylib = staged / "pylib"
    assert (pylib / "tradesim" / "jobs" / "execution.py").exists()
    for left_out in ("infra", "cli", "tui"):
        assert not (pylib / "tradesim" / left_out).exists()
    assert (pylib / "example" / "__init__.py").exists()  # the vendored packages, beside the package
    assert (staged / "requirements.txt").read_text() == "example==1.0\n"
    assert (staged / "lib" / "tradesim-jobs.jar").read_bytes() == stand_in_jar(built).read_bytes()


def test_kafka_is_kraft_and_follows_its_configuration_s_newest_revision(synthesized: Synthesized) -> None:
    """A probe: "3.9.x" makes a ZooKeeper cluster (KRaft is "3.9.x.kraft", and a cluster never changes mode), and
    the cluster was pinned to revision 1 of its configuration, so a change of the broker settings never applied."""
    (config_name,) = synthesized.of_type("AWS::MSK::Configuration")
    (cluster,) = synthesized.properties("AWS::MSK::Cluster")
    (config,) = synthesized.properties("AWS::MSK::Configuration")
    assert cluster["KafkaVersion"].endswith(".kraft")
    assert config["KafkaVersionsList"] == [cluster["KafkaVersion"]]
    assert cluster["ConfigurationInfo"]["Revision"] == {"Fn::GetAtt": [config_name, "LatestRevision.Revision"]}


def test_redis_is_kept_where_the_data_is_protected(prod: Synthesized, dev: Synthesized) -> None:
    assert all(r.get("DeletionPolicy") == "Retain" for r in prod.of_type("AWS::ElastiCache::ReplicationGroup").values())
    assert all(r.get("DeletionPolicy") == "Delete" for r in dev.of_type("AWS::ElastiCache::ReplicationGroup").values())


def test_the_search_index_has_a_replica_in_another_zone(synthesized: Synthesized) -> None:
    """A probe: the init task made the index with the local node's 0 replicas, so a zone-aware domain lost it
    (red) with one node."""
    (domain,) = synthesized.properties("AWS::OpenSearchService::Domain")
    nodes = domain["ClusterConfig"]["InstanceCount"]
    searching = []
    for definition in synthesized.properties("AWS::ECS::TaskDefinition"):
        for container in definition["ContainerDefinitions"]:
            env = {v["Name"]: v["Value"] for v in container.get("Environment", [])}
            if "TRADESIM_OPENSEARCH__URL" in env:
                assert env["TRADESIM_OPENSEARCH__REPLICAS"] == str(min(nodes - 1, 2)), container["Name"]
                searching.append(container["Name"])
    assert "init" in searching  # the task that makes the index (else the loop above checked nothing)


def test_the_init_task_can_be_run_from_the_outputs(synthesized: Synthesized) -> None:
    """A probe: the outputs named the init task's definition but not where it may run (only its security group
    reaches the stores)."""
    outputs = synthesized.template["Outputs"]
    assert {"LoadBalancer", "InitTask", "Cluster", "InitSubnets", "InitSecurityGroup",
            "ClickHousePasswordSecret"} <= set(outputs)
    (init_group,) = [name for name, r in synthesized.of_type("AWS::EC2::SecurityGroup").items()
                     if "one-off task" in r["Properties"]["GroupDescription"]]
    assert outputs["InitSecurityGroup"]["Value"] == {"Fn::GetAtt": [init_group, "GroupId"]}


def test_an_assembly_folder_inside_the_checkout_stays_out_of_the_image(tmp_path: Path) -> None:
    """A probe: `--out cdk.out` at the checkout's root made the image asset copy the folder into itself until the
    path was too long (ENAMETOOLONG, 105 MB left behind)."""
    from tradesim.infra.services import IMAGE_CONTEXT_EXCLUDE, REPO, image_exclude

    assert image_exclude(tmp_path / "out") == IMAGE_CONTEXT_EXCLUDE
    assert image_exclude(REPO / "cdk.out") == [*IMAGE_CONTEXT_EXCLUDE, "cdk.out"]
    assert image_exclude(REPO / "work" / "out") == [*IMAGE_CONTEXT_EXCLUDE, "work/out"]


def test_volumes_are_gp3_and_clickhouses_is_mounted_by_its_own_name(synthesized: Synthesized) -> None:
    """A probe: OpenSearch's volumes were gp2 (docs/scaling.md prices gp3), and ClickHouse's data disk was mounted as
    /dev/nvme1n1, a name Nitro instances do not keep: swapped, ClickHouse would write to the root disk."""
    (domain,) = synthesized.properties("AWS::OpenSearchService::Domain")
    assert domain["EBSOptions"]["VolumeType"] == "gp3"
    (template,) = synthesized.properties("AWS::EC2::LaunchTemplate")
    devices = {d["DeviceName"]: d["Ebs"] for d in template["LaunchTemplateData"]["BlockDeviceMappings"]}
    assert devices["/dev/xvdb"]["VolumeType"] == "gp3"
    script = json.dumps(template["LaunchTemplateData"]["UserData"])
    assert "dev=/dev/xvdb" in script  # the mapping's name, linked to its NVMe device by the AMI's udev rules
    assert "UUID=$(blkid -s UUID -o value $dev)" in script


def test_bytecode_or_another_file_written_between_two_syntheses_changes_nothing(dev: Synthesized) -> None:
    """A probe: the image asset's hash took in the __pycache__ folders of the checkout, so a module imported for the
    first time between two syntheses (a test run, `tradesim up`) gave every task definition a new image. A review:
    so did every file at the checkout's root the Dockerfile never copies (CHANGELOG.md, a test's report)."""
    from tradesim.infra.services import REPO

    cache = REPO / "tradesim" / "adapters" / "__pycache__"
    made = not cache.exists()
    probe = cache / "tradesim_probe.cpython-311.pyc"
    report = REPO / f"synth_probe_{os.getpid()}.html"  # untracked, as a snapshot test's report
    cache.mkdir(exist_ok=True)
    probe.write_bytes(b"bytecode")
    report.write_text("<html></html>")
    try:  # beside the first synthesis: the same stand-in jar and packages, so any difference is the checkout's
        again = synthesize_for_test("dev", dev.result.outdir.parent / "again")
    finally:
        probe.unlink()
        report.unlink()
        if made:
            cache.rmdir()
    assert again.template.read_bytes() == dev.result.template.read_bytes()
