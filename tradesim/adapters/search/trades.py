"""The search read model: order outcomes in concrete indices `<alias>-<n>` behind one alias, written
idempotently by order id, searched page by page, and swapped whole by a rebuild (docs/design/search-model.md)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tradesim.adapters.search import queries
from tradesim.adapters.search.client import SearchClient
from tradesim.adapters.search.codec import decode, decode_cursor, encode, encode_cursor
from tradesim.adapters.search.errors import IndexingFailed, IndexLayoutError, bulk_failure
from tradesim.adapters.search.schema import REFRESH_INTERVAL, template
from tradesim.domain.trades import TradePage, TradeQuery, TradeRecord
from tradesim.settings import OpenSearchSettings, redacted

#: documents per _bulk request; a larger batch is sent in several, and retried whole on Unavailable
BULK_CHUNK = 1000
#: documents per page of records()
SCAN_PAGE = 1000
#: a _reindex of a whole index may take far longer than one ordinary request
CARRY_OVER_TIMEOUT_S = 300.0


def numbered_index(alias: str, name: str) -> re.Match[str] | None:
    """`name` as a concrete index `<alias>-<n>` of `alias` (group 1: n), or None."""
    return re.fullmatch(re.escape(alias) + r"-([0-9]+)", name)


@dataclass(frozen=True)
class Switched:
    """What an alias switch did: the indices the alias left (now deleted) and how many of their documents the
    new index lacked and received."""

    retired: list[str]
    carried: int


class TradeIndex:
    """TradeSink and TradeSearch over the alias; `on(index)` gives the same over one concrete index (a rebuild
    loads its new index through it). The document id is the order id and writes use `create`, so writing an
    outcome again is a no-op and the first copy stays."""

    #: the sink's name (metrics, consumer group)
    name = "search"

    def __init__(self, client: SearchClient, alias: str = "trades", *, index: str | None = None,
                 replicas: int = 0) -> None:
        self.client = client
        self.alias = alias
        #: of each new concrete index (the template's); existing ones keep theirs
        self.replicas = replicas
        #: where reads and writes go: the alias, or one concrete index
        self.target = index or alias

    @classmethod
    def from_settings(cls, settings: OpenSearchSettings, timeout_s: float | None = None) -> TradeIndex:
        return cls(SearchClient(settings, timeout_s), settings.trades_index, replicas=settings.replicas)

    def on(self, index: str) -> TradeIndex:
        """The read model of one concrete index, sharing this client."""
        return TradeIndex(self.client, self.alias, index=index, replicas=self.replicas)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TradeIndex:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- layout: the alias and its concrete indices ------------------------------------------------------

    def indices(self) -> dict[str, set[str]]:
        """Every concrete index `<alias>-<n>` → its aliases (an index from an unfinished rebuild has none)."""
        return {name: aliases for name, aliases in self.client.aliases(f"{self.alias}-*").items()
                if numbered_index(self.alias, name)}

    def current(self) -> list[str]:
        """The concrete indices behind the alias (one, unless someone else added more); [] if it does not
        exist. A pre-alias index named like the alias is listed under its own name."""
        return sorted(self.client.aliases(self.alias))

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for name in self.indices() if (m := numbered_index(self.alias, name))]
        return f"{self.alias}-{max(numbers, default=0) + 1}"

    def _install_template(self) -> None:
        # Always, so a changed mapping reaches the next index; existing indices keep theirs.
        self.client.put_index_template(self.alias, template(self.alias, self.replicas))

    def ensure(self) -> str | None:
        """Install the template and, if the alias does not exist, create the first concrete index behind it;
        returns the created index or None. An empty pre-alias index named like the alias is deleted first; a
        non-empty one raises IndexLayoutError (a rebuild's switch replaces it)."""
        self._install_template()
        behind = self.current()
        if self.alias in behind:
            documents = self.client.count(self.alias)
            if documents:
                raise IndexLayoutError(
                    f"{self.alias!r} is a concrete index from before tradesim 0.14 (no alias), holding {documents} "
                    f"document(s) of the old shape; `tradesim rebuild search` replaces it by {self.alias}-<n> "
                    f"behind an alias, or delete it (DELETE {redacted(self.client.url)}/{self.alias}) and run `up` "
                    "again")
            self.client.delete_index(self.alias)
        elif behind:
            return None
        first = self._next_name()
        if self.client.create_index(first, {"aliases": {self.alias: {"is_write_index": True}}}):
            return first
        if self.current():  # another process ensured it at the same moment
            return None
        raise IndexLayoutError(f"{first} exists but {self.alias!r} does not point to it")

    def create_next(self, bulk_load: bool = True) -> str:
        """Create the next concrete index `<alias>-<n+1>`, empty and outside the alias; with bulk_load, it is
        not refreshed until switch(). Load it through on(name)."""
        self._install_template()
        name = self._next_name()
        body = {"settings": {"index": {"refresh_interval": "-1"}}} if bulk_load else None
        if not self.client.create_index(name, body):
            raise IndexLayoutError(f"{name} was created by someone else meanwhile; is another rebuild running?")
        return name

    def switch(self, new_index: str, carry_over: bool = True) -> Switched:
        """Point the alias at `new_index` alone, in one atomic alias change, and retire the indices it left.
        With carry_over, documents the new index lacks (outcomes written to the live index while the new one
        was loaded) are copied over twice: before the change, so searches see no dip, and after blocking the
        old index's writes, for those written in between. A copy that fails raises IndexingFailed before the
        alias moved (first pass) or keeps the old index (second). A pre-alias index is removed in the change."""
        if not numbered_index(self.alias, new_index):
            raise ValueError(f"{new_index!r} is not a concrete index of {self.alias!r}")
        # Searchable like a live index before anyone reads it through the alias.
        self.client.put_settings(new_index, {"index": {"refresh_interval": REFRESH_INTERVAL}})
        self.client.refresh(new_index)
        old = [name for name in self.current() if name != new_index]
        retired = [name for name in old if name != self.alias]
        carried = sum(self._carry_over(name, new_index) for name in retired) if carry_over else 0
        actions: list[dict[str, Any]] = [
            {"remove_index": {"index": name}} if name == self.alias
            else {"remove": {"index": name, "alias": self.alias}}
            for name in old
        ]
        actions.append({"add": {"index": new_index, "alias": self.alias, "is_write_index": True}})
        self.client.update_aliases(actions)
        for name in retired:
            # Writes resolved to the old index before the change finish before the block is in place or fail
            # with a block error, which the writer retries (Unavailable) through the alias.
            self.client.block_writes(name)
            if carry_over:
                carried += self._carry_over(name, new_index)
            self.client.delete_index(name)
        return Switched(retired=old, carried=carried)

    def _carry_over(self, source: str, dest: str) -> int:
        self.client.refresh(source)
        answer = self.client.reindex({
            "source": {"index": source},
            "dest": {"index": dest, "op_type": "create"},
            "conflicts": "proceed",  # the new index has it already: the first copy stays
        }, timeout_s=max(CARRY_OVER_TIMEOUT_S, self.client.timeout_s))
        failures = answer.get("failures") or []
        if failures:
            raise IndexingFailed({str(f.get("id")): str(f.get("cause")) for f in failures}
                                 | {"(kept)": f"{source} is not deleted"})
        return int(answer.get("created", 0))

    def drop(self) -> None:
        """Delete the alias with every concrete index of it, and its template (tests, a full reset)."""
        for name in {*self.current(), *self.indices()}:
            self.client.delete_index(name)
        self.client.delete_index_template(self.alias)

    # ---- writes (TradeSink) ---------------------------------------------------------------------------------

    def write(self, records: Sequence[TradeRecord], refresh: bool = False) -> None:
        """Store every record whose order id is not stored yet. Raises Unavailable (retry the whole batch),
        IndexingFailed naming refused ids, InvalidRecord before sending anything if one cannot be held exactly."""
        docs = [encode(record) for record in records]
        for start in range(0, len(docs), BULK_CHUNK):
            operations: list[dict[str, Any]] = []
            for doc in docs[start:start + BULK_CHUNK]:
                operations.append({"create": {"_index": self.target, "_id": doc["order_id"]}})
                operations.append(doc)
            # require_alias: writing to the alias must never fall through to a concrete index of that name.
            answer = self.client.bulk(operations, refresh=refresh, require_alias=self.target == self.alias)
            failure = bulk_failure(answer)
            if failure is not None:
                raise failure

    # ---- reads (TradeSearch) --------------------------------------------------------------------------------

    def search(self, query: TradeQuery) -> TradePage:
        """One page in the query's order. Raises InvalidCursor, Unavailable, ValueError for a size or sort the
        read model does not offer, InvalidRecord if a stored document is malformed."""
        queries.validate(query)
        digest = queries.digest(query)
        after = (decode_cursor(query.cursor, digest, queries.sort_kinds(query.sort))
                 if query.cursor is not None else None)
        answer = self.client.search(self.target, queries.search_body(query, after))
        hits = answer["hits"]["hits"]
        page = hits[:query.size]
        more = len(hits) > query.size
        return TradePage(
            records=[decode(hit["_source"]) for hit in page],
            next_cursor=encode_cursor(page[-1]["sort"], digest) if more else None,
            total=int(answer["hits"]["total"]["value"]),
        )

    def count(self) -> int:
        return self.client.count(self.target)

    def refresh(self) -> None:
        """Make everything written so far visible to search."""
        self.client.refresh(self.target)

    def records(self) -> Iterator[TradeRecord]:
        """Every stored record, in order id order (fetched page by page)."""
        after: list[object] | None = None
        while True:
            body: dict[str, Any] = {"size": SCAN_PAGE, "sort": [{"order_id": "asc"}], "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            hits = self.client.search(self.target, body)["hits"]["hits"]
            for hit in hits:
                yield decode(hit["_source"])
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]


class Rebuild:
    """One rebuild of the search read model, in the shape `tradesim rebuild` drives: fresh() creates and returns
    the writer of `<alias>-<n+1>`, switch() moves the alias to it, live() writes through the alias."""

    name = "search"

    def __init__(self, index: TradeIndex) -> None:
        self.index = index
        self.new: str | None = None
        self.switched: Switched | None = None
        self.switching = False

    #: an index outside the alias this old, left by a rebuild that was killed, is deleted by the next one
    STALE_MS = 24 * 3600 * 1000

    def fresh(self) -> TradeIndex:
        self._delete_stale()
        self.new = self.index.create_next()
        return self.index.on(self.new)

    def _delete_stale(self) -> None:
        now_ms = int(time.time() * 1000)
        for name, aliases in self.index.indices().items():
            if aliases:
                continue  # live (or someone's on purpose)
            created = self.index.client.get_settings(name).get(name, {}).get("settings", {}).get("index", {})
            if int(created.get("creation_date", now_ms)) < now_ms - self.STALE_MS:
                self.index.client.delete_index(name)

    def switch(self) -> None:
        if self.new is None:
            raise RuntimeError("switch() before fresh(): there is no new index to switch to")
        self.switching = True
        # No carry-over: a rebuild must equal the log (and drop what the log does not have); what the live
        # service wrote to the old index during the load is re-read by the rebuild's catch-up.
        self.switched = self.index.switch(self.new, carry_over=False)

    def live(self) -> TradeIndex:
        return self.index

    def discard(self) -> None:
        """Delete the loaded index, unless a switch was tried: an alias change whose answer timed out may still
        apply, so the index may be live or become so (one left over is deleted a day later, see fresh)."""
        if self.new is not None and not self.switching:
            self.index.client.delete_index(self.new)
            self.new = None
