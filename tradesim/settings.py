"""The one settings object: env vars `TRADESIM_*` (nested with `__`) over an optional `tradesim.toml`.

Every host, port and path the system uses comes from here, so any endpoint can point at an external
cluster by configuration alone. Build it with `load_settings()` at an entry point, never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Port = Annotated[int, Field(ge=1, le=65535)]
LOOPBACK = "127.0.0.1"


class Section(BaseModel):
    """A settings section; unknown keys are errors so a typo in tradesim.toml never passes silently."""

    model_config = ConfigDict(extra="forbid")


class KafkaSettings(Section):
    """Apache Kafka (KRaft, one combined broker+controller node)."""

    host: str = Field(LOOPBACK, description="Address the broker listens on and clients connect to.")
    port: Port = Field(9092, description="Client (PLAINTEXT) listener port.")
    controller_port: Port = Field(9093, description="KRaft controller listener port.")
    bootstrap_servers: str | None = Field(
        None, description="Use an external cluster instead of host:port (comma-separated host:port list)."
    )
    version: str = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version fetched from Maven Central.")
    heap_mb: int = Field(512, ge=128, description="JVM heap of the broker; 512 MB suits a 2-core dev box.")
    partitions: int = Field(6, ge=1, description="Partitions of each tradesim topic created by `up`.")
    retention_hours: int = Field(168, ge=1, description="Topic retention; bounds how far replays can reach.")

    @property
    def bootstrap(self) -> str:
        """Bootstrap list clients use; the local node unless an external cluster is configured."""
        return self.bootstrap_servers or f"{self.host}:{self.port}"


class RedisSettings(Section):
    """Redis: the latest-price cache and pub/sub fan-out."""

    host: str = Field(LOOPBACK, description="Address Redis binds to and clients connect to.")
    port: Port = Field(6379, description="Redis port.")
    url: str | None = Field(None, description="Use an external Redis (redis://...) instead of host:port.")
    persistence: Literal["aof", "none"] = Field(
        "aof", description="'aof' keeps data across restarts (append-only file); 'none' is a pure cache."
    )
    maxmemory_mb: int = Field(256, ge=16, description="Memory cap of the local server.")

    @property
    def client_url(self) -> str:
        """URL clients use."""
        return self.url or f"redis://{self.host}:{self.port}/0"


class DynamoDBSettings(Section):
    """DynamoDB API: dynalite locally, or real AWS / another endpoint by configuration."""

    host: str = Field(LOOPBACK, description="Address the local dynalite binds to.")
    port: Port = Field(8000, description="Port of the local dynalite (DynamoDB Local's usual port).")
    endpoint_url: str | None = Field(
        None, description="External endpoint (e.g. https://dynamodb.eu-west-1.amazonaws.com); set use_aws instead "
        "to let boto3 pick the AWS endpoint."
    )
    use_aws: bool = Field(False, description="Talk to real AWS DynamoDB (credentials from the usual AWS chain).")
    region: str = Field("us-east-1", description="AWS region name (dynalite accepts any).")
    table_prefix: str = Field("", description="Prefix of every table name, to share one AWS account.")

    @property
    def external(self) -> bool:
        return self.use_aws or self.endpoint_url is not None

    @property
    def endpoint(self) -> str | None:
        """endpoint_url for boto3; None means boto3's default AWS endpoint."""
        if self.use_aws:
            return None
        return self.endpoint_url or f"http://{self.host}:{self.port}"


class OpenSearchSettings(Section):
    """Search engine (OpenSearch 2.19.x, Elasticsearch-compatible REST)."""

    host: str = Field(LOOPBACK, description="Address the local node binds HTTP and transport to.")
    port: Port = Field(9200, description="HTTP port.")
    transport_port: Port = Field(9300, description="Node-to-node transport port.")
    url: str | None = Field(None, description="Use an external cluster (http(s)://host:port) instead.")
    heap_mb: int = Field(768, ge=256, description="JVM heap of the local node.")

    @property
    def client_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class ClickHouseSettings(Section):
    """ClickHouse: the analytics read model."""

    host: str = Field(LOOPBACK, description="Address the local server binds to.")
    http_port: Port = Field(8123, description="HTTP interface port (used by clickhouse-connect).")
    tcp_port: Port = Field(9000, description="Native protocol port (clickhouse-client).")
    url: str | None = Field(None, description="Use an external server (http://host:port) instead.")
    database: str = Field("tradesim", description="Database holding the tradesim tables.")
    user: str = Field("default", description="User name.")
    password: SecretStr = Field(SecretStr(""), description="Password.")

    @property
    def client_url(self) -> str:
        return self.url or f"http://{self.host}:{self.http_port}"


class TopicSettings(Section):
    """Names of the Kafka topics; all producers and consumers read them from here."""

    market_data: str = "market_data"
    trade_orders: str = "trade_orders"
    trade_executed: str = "trade_executed"
    dead_letter: str = "dead_letter"


class StackSettings(Section):
    """How `tradesim up` runs servers."""

    runtime: Literal["native", "docker"] = Field("native", description="native processes, or docker compose.")
    start_timeout_s: float = Field(90.0, gt=0, description="Deadline for a server to become healthy.")
    stop_timeout_s: float = Field(20.0, gt=0, description="Grace period after SIGTERM before SIGKILL.")
    java_home: Path | None = Field(None, description="JDK used for Java servers; default: JAVA_HOME or PATH.")
    compose_file: Path | None = Field(None, description="docker compose file; default: docker/compose.yaml.")


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("tradesim"))


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("tradesim"))


class Settings(BaseSettings):
    """All of tradesim's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="TRADESIM_",
        env_nested_delimiter="__",
        toml_file="tradesim.toml",
        extra="forbid",
    )

    home: Path = Field(default_factory=_default_home, description="Stack state: data, logs, pids, state file.")
    cache_dir: Path = Field(
        default_factory=_default_cache, description="Downloaded artifacts (jars, npm packages); safe to delete."
    )
    stack: StackSettings = StackSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    dynamodb: DynamoDBSettings = DynamoDBSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    topics: TopicSettings = TopicSettings()

    @field_validator("home", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def stack_dir(self) -> Path:
        """Folder of the running stack: one subfolder per component plus the state file."""
        return self.home / "stack"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("TRADESIM_CONFIG", "tradesim.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))


def load_settings(**overrides: object) -> Settings:
    """Build the settings; raises pydantic.ValidationError on invalid values (the CLI turns it into exit 2)."""
    return Settings(**overrides)  # type: ignore[arg-type]
