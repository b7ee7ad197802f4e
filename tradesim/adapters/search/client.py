"""The search cluster connection: the only module that calls opensearch-py.

`SearchClient` offers the few REST calls the adapter needs, with the request bodies left as plain JSON
(the OpenSearch protocol itself), connects lazily, and lets errors.py turn every vendor exception into ours.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import opensearchpy

from tradesim.adapters.search.errors import (
    SearchRequestError,
    missing_index_unavailable,
    not_opensearch,
    translated,
)
from tradesim.settings import OpenSearchSettings


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

    def _translated(self, what: str, timeout_s: float | None = None) -> AbstractContextManager[None]:
        return translated(what, self.url, timeout_s or self.timeout_s)

    # ---- cluster and index administration --------------------------------------------------------------

    def cluster_health(self) -> dict[str, Any]:
        with self._translated("cluster health"):
            health = self._os.cluster.health()
        if not isinstance(health, dict):  # JSON of another server's
            raise not_opensearch("cluster health", self.url, health)
        return health

    def put_index_template(self, name: str, body: dict[str, Any]) -> None:
        with self._translated(f"put index template {name}"):
            self._os.indices.put_index_template(name=name, body=body)

    def delete_index_template(self, name: str) -> bool:
        """Delete the template; False if it did not exist."""
        return self._deleted(f"delete index template {name}", lambda: self._os.indices.delete_index_template(name=name))

    def create_index(self, index: str, body: dict[str, Any] | None = None) -> bool:
        """Create the index (what `body` leaves out comes from its template); False if it already existed."""
        try:
            with self._translated(f"create index {index}"):
                self._os.indices.create(index=index, body=body)
        except SearchRequestError as exc:
            if exc.error_type == "resource_already_exists_exception":
                return False
            raise
        return True

    def delete_index(self, index: str) -> bool:
        """Delete the index; False if it did not exist."""
        return self._deleted(f"delete index {index}", lambda: self._os.indices.delete(index=index))

    def _deleted(self, what: str, delete: Callable[[], object]) -> bool:
        """Run a delete; False if there was nothing to delete (404)."""
        try:
            with self._translated(what):
                delete()
        except SearchRequestError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def aliases(self, index: str) -> dict[str, set[str]]:
        """Concrete index → its aliases, for the indices `index` names (a name, an alias or a pattern);
        empty if it names nothing."""
        try:
            with self._translated(f"get aliases of {index}"):
                answer = self._os.indices.get_alias(index=index, params={"allow_no_indices": "true"})
        except SearchRequestError as exc:
            if exc.status == 404:
                return {}
            raise
        return {name: set(info.get("aliases", {})) for name, info in dict(answer).items()}

    def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        """Apply alias actions in one atomic cluster-state change."""
        with self._translated("update aliases"):
            self._os.indices.update_aliases(body={"actions": actions})

    def put_settings(self, index: str, settings: dict[str, Any]) -> None:
        with self._translated(f"put settings of {index}"):
            self._os.indices.put_settings(index=index, body=settings)

    def block_writes(self, index: str) -> None:
        """Refuse further writes to the index; returns once writes already under way have finished."""
        with self._translated(f"block writes to {index}"):
            self._os.indices.add_block(index=index, block="write")

    def get_mapping(self, index: str) -> dict[str, Any]:
        with self._translated(f"get mapping of {index}"):
            return dict(self._os.indices.get_mapping(index=index))

    def get_settings(self, index: str) -> dict[str, Any]:
        with self._translated(f"get settings of {index}"):
            return dict(self._os.indices.get_settings(index=index))

    def refresh(self, index: str) -> None:
        with self._translated(f"refresh {index}"):
            self._os.indices.refresh(index=index)

    # ---- snapshots (tradesim backup / restore) -------------------------------------------------------------

    def put_fs_repository(self, name: str, location: str, readonly: bool = False) -> None:
        """Register a shared-file-system snapshot repository (`location` must lie under the node's path.repo)."""
        with self._translated(f"register snapshot repository {name}"):
            self._os.snapshot.create_repository(repository=name, body={
                "type": "fs", "settings": {"location": location, "readonly": readonly}})

    def delete_repository(self, name: str) -> bool:
        return self._deleted(f"delete snapshot repository {name}",
                             lambda: self._os.snapshot.delete_repository(repository=name))

    def snapshot(self, repository: str, name: str, indices: list[str], timeout_s: float) -> dict[str, Any]:
        """Take a snapshot of `indices` (with their aliases, without the cluster state) and wait for it."""
        with self._translated(f"snapshot {name}", timeout_s):
            answer = self._os.snapshot.create(
                repository=repository, snapshot=name, params={"wait_for_completion": "true"},
                body={"indices": ",".join(indices), "include_global_state": False, "ignore_unavailable": True},
                request_timeout=timeout_s)
        return dict(answer["snapshot"])

    def restore(self, repository: str, name: str, timeout_s: float) -> dict[str, Any]:
        """Restore every index of the snapshot, with its aliases, and wait for it."""
        with self._translated(f"restore snapshot {name}", timeout_s):
            answer = self._os.snapshot.restore(
                repository=repository, snapshot=name, params={"wait_for_completion": "true"},
                body={"include_aliases": True, "include_global_state": False}, request_timeout=timeout_s)
        return dict(answer["snapshot"])

    # ---- documents and queries ----------------------------------------------------------------------------

    def bulk(self, operations: list[dict[str, Any]], refresh: bool = False,
             require_alias: bool = False) -> dict[str, Any]:
        """Send action/document pairs as one _bulk request; per-item errors are in the answer."""
        params = {"refresh": "true" if refresh else "false", "require_alias": "true" if require_alias else "false"}
        with self._translated("bulk"):
            return dict(self._os.bulk(body=operations, params=params))

    def reindex(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Run a _reindex and wait for it (up to timeout_s)."""
        with self._translated("reindex", timeout_s):
            return dict(self._os.reindex(body=body, params={"refresh": "true", "wait_for_completion": "true"},
                                         request_timeout=timeout_s))

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            with self._translated(f"search {index}"):
                return dict(self._os.search(index=index, body=body))
        except SearchRequestError as exc:
            raise missing_index_unavailable(exc, index) from None

    def count(self, index: str, body: dict[str, Any] | None = None) -> int:
        try:
            with self._translated(f"count {index}"):
                return int(self._os.count(index=index, body=body)["count"])
        except SearchRequestError as exc:
            raise missing_index_unavailable(exc, index) from None
