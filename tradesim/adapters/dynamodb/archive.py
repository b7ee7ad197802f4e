"""DynamoDB tables to files and back: a strongly consistent scan, one item per line in DynamoDB's own JSON, and
BatchWriteItem to put them back (works against dynalite and AWS alike)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.errors import translate
from tradesim.adapters.dynamodb.tables import table_name

Progress = Callable[[int], None]
#: BatchWriteItem takes at most 25 items
_BATCH = 25


def _call(what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, what) from None


def is_empty(db: DynamoDB, logical: str) -> bool:
    name = table_name(db.settings, logical)
    return not _call(f"scan {name}", lambda: db.client.scan(TableName=name, Limit=1, ConsistentRead=True))["Items"]


def export_table(db: DynamoDB, logical: str, path: Path, progress: Progress = lambda _n: None) -> int:
    """Write every item of the table to `path`; returns the count. Raises Unavailable."""
    name = table_name(db.settings, logical)
    request: dict[str, Any] = {"TableName": name, "ConsistentRead": True}
    n = 0
    with gzip.open(path, "wt", encoding="utf-8") as f:
        while True:
            page = _call(f"scan {name}", lambda: db.client.scan(**request))
            for item in page["Items"]:
                f.write(json.dumps(item, separators=(",", ":")) + "\n")
            n += len(page["Items"])
            progress(len(page["Items"]))
            if "LastEvaluatedKey" not in page:
                return n
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read_items(path: Path, containing: str = "") -> Iterator[dict[str, Any]]:
    """The items of an exported table, in DynamoDB's JSON; only lines containing `containing` are parsed (a cheap
    filter for a scan of a large table)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if containing in line:
                yield json.loads(line)


def import_table(db: DynamoDB, logical: str, path: Path, progress: Progress = lambda _n: None,
                 writers: int = 4) -> int:
    """Put every item of `path` into the table, `writers` batches at a time; returns the count. Raises
    Unavailable."""
    name = table_name(db.settings, logical)
    n = 0
    with gzip.open(path, "rt", encoding="utf-8") as f, ThreadPoolExecutor(writers) as pool:
        pending: list[Future[int]] = []
        batch: list[dict[str, Any]] = []
        for line in chain(f, [None]):
            if line is not None:
                batch.append(json.loads(line))
            if batch and (len(batch) == _BATCH or line is None):
                pending.append(pool.submit(_put, db, name, batch))
                batch = []
            while pending and (len(pending) >= 2 * writers or line is None):
                done = pending.pop(0).result()
                n += done
                progress(done)
    return n


def _put(db: DynamoDB, name: str, items: list[dict[str, Any]]) -> int:
    requests: dict[str, list[dict[str, Any]]] = {name: [{"PutRequest": {"Item": i}} for i in items]}
    for attempt in range(20):
        answer = _call(f"write {name}", partial(db.client.batch_write_item, RequestItems=requests))
        requests = answer.get("UnprocessedItems") or {}
        if not requests:
            return len(items)
        time.sleep(min(0.05 * 2 ** attempt, 1.0))  # throttled: back off as the SDKs do
    raise translate(ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                           "Message": "items left unprocessed"}}, "BatchWriteItem"), f"write {name}")
