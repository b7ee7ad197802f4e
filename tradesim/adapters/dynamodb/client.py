"""boto3 clients configured from settings, with timeouts and retries bounded so a down store fails fast."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from tradesim.settings import DynamoDBSettings

#: dynalite checks that requests are signed but not by whom; real AWS uses the normal credential chain.
LOCAL_CREDENTIALS = {"aws_access_key_id": "tradesim", "aws_secret_access_key": "tradesim"}
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_ATTEMPTS = 2


def boto_config(timeout_s: float = DEFAULT_TIMEOUT_S, max_attempts: int = DEFAULT_ATTEMPTS) -> Config:
    """Worst case per call ≈ max_attempts × (connect + read timeout) plus a short backoff."""
    return Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        # the execution job shares one client across worker threads
        max_pool_connections=32,
    )


def _session_kwargs(settings: DynamoDBSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if not settings.external:
        kwargs.update(LOCAL_CREDENTIALS)
    return kwargs


def make_client(settings: DynamoDBSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                max_attempts: int = DEFAULT_ATTEMPTS) -> Any:
    """A low-level client (thread-safe). No network I/O until the first request."""
    # A session per client: boto3 sessions are not thread-safe, so never share the default one.
    session = boto3.session.Session(**_session_kwargs(settings))
    return session.client("dynamodb", endpoint_url=settings.endpoint,
                          config=boto_config(timeout_s, max_attempts))


def make_resource(settings: DynamoDBSettings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                  max_attempts: int = DEFAULT_ATTEMPTS) -> Any:
    """A resource (Decimal in, Decimal out); not thread-safe, so one per thread."""
    session = boto3.session.Session(**_session_kwargs(settings))
    return session.resource("dynamodb", endpoint_url=settings.endpoint,
                            config=boto_config(timeout_s, max_attempts))


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
