"""The search cluster connection: the only module that knows tradesim talks to it through opensearch-py.

`SearchClient` offers the few REST calls the adapter needs, with the request bodies left as plain JSON
(the OpenSearch protocol itself), connects lazily, and turns every vendor exception into ours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import opensearchpy

from tradesim.adapters.search.errors import SearchRequestError, SearchUnavailable, from_status
from tradesim.settings import OpenSearchSettings


def _error_details(exc: opensearchpy.TransportError) -> tuple[str, str]:
    """(error type, reason) from an error answer, whatever shape its body has."""
    info = exc.info
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            return str(err.get("type", exc.error)), str(err.get("reason", ""))
        if err is not None:
            return str(err), str(info.get("reason", ""))
    return str(exc.error), str(info or "")


class SearchClient:
    """A lazily connected client for one cluster; no network I/O until the first call."""

    def __init__(self, settings: OpenSearchSettings, timeout_s: float | None = None) -> None:
        self.url = settings.client_url
        self.timeout_s = timeout_s if timeout_s is not None else settings.timeout_s
        self._client: opensearchpy.OpenSearch | None = None

    @property
    def _os(self) -> opensearchpy.OpenSearch:
        if self._client is None:
            # No retries: one node, and callers need a bounded deadline more than a second attempt.
            self._client = opensearchpy.OpenSearch(
                hosts=[self.url], timeout=self.timeout_s, max_retries=0, retry_on_timeout=False,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except opensearchpy.ConnectionError as exc:  # also ConnectionTimeout; must precede TransportError
            raise SearchUnavailable(
                f"{what}: no answer from {self.url} within {self.timeout_s:g} s ({type(exc).__name__}: {exc.error})"
            ) from None
        except opensearchpy.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            raise from_status(what, status, *_error_details(exc)) from None

    # ---- cluster and index administration --------------------------------------------------------------

    def cluster_health(self) -> dict[str, Any]:
        with self._translated("cluster health"):
            return dict(self._os.cluster.health())

    def put_index_template(self, name: str, body: dict[str, Any]) -> None:
        with self._translated(f"put index template {name}"):
            self._os.indices.put_index_template(name=name, body=body)

    def create_index(self, index: str) -> bool:
        """Create the index (settings and mappings come from its template); False if it already existed."""
        try:
            with self._translated(f"create index {index}"):
                self._os.indices.create(index=index)
        except SearchRequestError as exc:
            if exc.error_type == "resource_already_exists_exception":
                return False
            raise
        return True

    def delete_index(self, index: str) -> bool:
        """Delete the index; False if it did not exist."""
        try:
            with self._translated(f"delete index {index}"):
                self._os.indices.delete(index=index)
        except SearchRequestError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def refresh(self, index: str) -> None:
        with self._translated(f"refresh {index}"):
            self._os.indices.refresh(index=index)

    # ---- documents and queries ----------------------------------------------------------------------------

    def bulk(self, operations: list[dict[str, Any]], refresh: bool = False) -> dict[str, Any]:
        """Send action/document pairs as one _bulk request; per-item errors are in the answer."""
        params = {"refresh": "true"} if refresh else None
        with self._translated("bulk"):
            return dict(self._os.bulk(body=operations, params=params))

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._translated(f"search {index}"):
            return dict(self._os.search(index=index, body=body))

    def count(self, index: str, body: dict[str, Any] | None = None) -> int:
        with self._translated(f"count {index}"):
            return int(self._os.count(index=index, body=body)["count"])
