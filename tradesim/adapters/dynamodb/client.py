"""DynamoDB clients configured from settings, with timeouts and retries bounded so a down store fails fast."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from tradesim.adapters.dynamodb.errors import DynamoDBError
from tradesim.adapters.dynamodb.wire import Credentials, WireClient
from tradesim.settings import DynamoDBSettings

#: dynalite checks that requests are signed but not by whom; real AWS uses the normal credential chain.
LOCAL_CREDENTIALS = {"aws_access_key_id": "tradesim", "aws_secret_access_key": "tradesim"}
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_ATTEMPTS = 2


def _credentials(settings: DynamoDBSettings) -> Callable[[], Credentials]:
    if not settings.external:
        fixed = (LOCAL_CREDENTIALS["aws_access_key_id"], LOCAL_CREDENTIALS["aws_secret_access_key"], None)
        return lambda: fixed
    chain = boto3.session.Session().get_credentials()  # env, profile, SSO, instance role: the SDK's own chain
    if chain is None:
        raise DynamoDBError("NoCredentials", "no AWS credentials found for DynamoDB (configure the AWS CLI chain)")

    def current() -> Credentials:
        frozen = chain.get_frozen_credentials()  # refreshes temporary credentials before they expire
        return frozen.access_key, frozen.secret_key, frozen.token

    return current


def _boto3_client(settings: DynamoDBSettings, timeout_s: float, max_attempts: int) -> Any:
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if not settings.external:
        kwargs.update(LOCAL_CREDENTIALS)
    # A session per client: boto3 sessions are not thread-safe, so never share the default one.
    session = boto3.session.Session(**kwargs)
    config = Config(connect_timeout=timeout_s, read_timeout=timeout_s, max_pool_connections=32,
                    retries={"total_max_attempts": max_attempts, "mode": "standard"})
    return session.client("dynamodb", endpoint_url=settings.endpoint, config=config)


def _aws_endpoint(region: str) -> str:
    """Where boto3 sends the region's calls: not always under amazonaws.com, since China's and the European
    Sovereign Cloud's partitions have domains of their own. Builds a client and calls nothing."""
    return str(boto3.session.Session().client("dynamodb", region_name=region).meta.endpoint_url)


def make_client(settings: DynamoDBSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                max_attempts: int = DEFAULT_ATTEMPTS) -> Any:
    """A low-level client (thread-safe; the wire client or boto3's, per `dynamodb.client`). No I/O until used.

    Worst case per call ≈ max_attempts × (connect + read timeout) plus a short backoff."""
    if settings.client == "boto3":
        return _boto3_client(settings, timeout_s, max_attempts)
    endpoint = settings.endpoint or _aws_endpoint(settings.region)
    return WireClient(endpoint, settings.region, _credentials(settings), timeout_s=timeout_s,
                      max_attempts=max_attempts)


class DynamoDB:
    """Holds one lazily created client for a component or service; `close()` releases its connections."""

    def __init__(self, settings: DynamoDBSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_attempts: int = DEFAULT_ATTEMPTS) -> None:
        self.settings = settings
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_client(self.settings, timeout_s=self._timeout_s,
                                           max_attempts=self._max_attempts)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
