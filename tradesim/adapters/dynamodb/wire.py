"""A lean DynamoDB client: the JSON protocol over keep-alive HTTP, signed with SigV4.

Why not boto3 on the hot path: a boto3 call costs about 1.1 ms of CPU here (parameter validation, event hooks,
shape-driven parsing), as much as dynalite spends answering it. The execution job and the order API make one or
two calls per order, so that overhead capped both. The wire protocol is simple: a POST whose `X-Amz-Target`
names the operation and whose JSON body is exactly boto3's low-level keyword arguments, answered with exactly
boto3's low-level result. So this client takes the same calls (`client.update_item(TableName=..., ...)`), and
raises botocore's own exceptions (ClientError with the service's error code, EndpointConnectionError,
ReadTimeoutError), so callers and `errors.translate` cannot tell the difference. It signs like the SDK, so the
same code runs against real DynamoDB (credentials from the normal boto3 chain).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

_TARGET = "DynamoDB_20120810."
_CONTENT_TYPE = "application/x-amz-json-1.0"
#: answered, but retryable (the SDK's standard retry mode retries these too)
_RETRYABLE_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                              "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable",
                              "TransactionInProgressException"})
Credentials = tuple[str, str, str | None]  # access key, secret key, session token


def _operation(name: str) -> str:
    """update_item → UpdateItem."""
    return "".join(part.capitalize() for part in name.split("_"))


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class WireClient:
    """Thread-safe: one keep-alive connection per thread. Same call style as boto3's low-level client."""

    def __init__(self, endpoint: str, region: str, credentials: Callable[[], Credentials], *,
                 timeout_s: float, max_attempts: int) -> None:
        url = urlsplit(endpoint)
        self.endpoint = endpoint
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._host_header = url.netloc
        self._region = region
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._max_attempts = max(1, max_attempts)
        self._local = threading.local()
        self._keys: dict[tuple[str, str], bytes] = {}
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        operation = _operation(name)
        return lambda **params: self.call(operation, params)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """One operation, retried like the SDK's standard mode (transient faults only, capped attempts)."""
        body = json.dumps(params, separators=(",", ":")).encode()
        for attempt in range(1, self._max_attempts + 1):
            try:
                return self._once(operation, body)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in _RETRYABLE_CODES or attempt == self._max_attempts:
                    raise
            except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError):
                if attempt == self._max_attempts:
                    raise
            time.sleep(random.uniform(0, min(1.0, 0.05 * 2 ** attempt)))  # noqa: S311 - jitter, not crypto
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, operation: str, body: bytes) -> dict[str, Any]:
        headers = self._sign(operation, body)
        reused = getattr(self._local, "conn", None) is not None
        conn = self._connection()
        try:
            try:
                conn.request("POST", "/", body, headers)
                answer = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                if not reused:
                    raise
                # the server closed the kept-alive connection before reading this request: one fresh try
                conn = self._reconnect()
                conn.request("POST", "/", body, headers)
                answer = conn.getresponse()
            data = answer.read()
        except TimeoutError:
            self._drop()
            raise ReadTimeoutError(endpoint_url=self.endpoint) from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise EndpointConnectionError(endpoint_url=self.endpoint, error=exc) from None
        if answer.status == 200:
            result: dict[str, Any] = json.loads(data) if data else {}
            return result
        try:
            problem = json.loads(data)
        except ValueError:
            problem = {"__type": f"HTTP{answer.status}", "message": data[:200].decode(errors="replace")}
        code = str(problem.get("__type", "")).rpartition("#")[2] or f"HTTP{answer.status}"
        message = str(problem.get("message") or problem.get("Message") or "")
        raise ClientError({"Error": {"Code": code, "Message": message},
                           "ResponseMetadata": {"HTTPStatusCode": answer.status}}, operation)

    def _sign(self, operation: str, body: bytes) -> dict[str, str]:
        access, secret, token = self._credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        target = _TARGET + operation
        # canonical headers: lower-case names in sorted order, each signed
        signing = {"content-type": _CONTENT_TYPE, "host": self._host_header, "x-amz-date": amz_date,
                   "x-amz-target": target}
        if token:
            signing["x-amz-security-token"] = token
        names = sorted(signing)
        canonical_headers = "".join(f"{n}:{signing[n]}\n" for n in names)
        signed = ";".join(names)
        canonical = f"POST\n/\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        scope = f"{day}/{self._region}/dynamodb/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = self._keys.get((secret, day))
        if key is None:
            key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), self._region), "dynamodb"), "aws4_request")
            self._keys = {(secret, day): key}
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {"Content-Type": _CONTENT_TYPE, "X-Amz-Date": amz_date, "X-Amz-Target": target,
                   "Authorization": f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={signature}"}
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        return conn if conn is not None else self._reconnect()

    def _drop(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    def _reconnect(self) -> http.client.HTTPConnection:
        self._drop()
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout_s)
        try:
            conn.connect()
        except TimeoutError:
            raise ConnectTimeoutError(endpoint_url=self.endpoint) from None
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self.endpoint, error=exc) from None
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (the next call opens a new one)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __del__(self) -> None:
        if "_lock" in self.__dict__:
            self.close()  # a client dropped without close() must not leak its sockets
