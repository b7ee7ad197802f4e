"""DynamoDB tables to a file and back (`tradesim backup` / `restore`): every item returns as it was, over several
BatchWriteItem batches written concurrently, into tables of another prefix."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tradesim.adapters.dynamodb.archive import export_table, import_table, is_empty
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.tables import PORTFOLIOS, ensure_tables, table_name
from tradesim.settings import Settings

pytestmark = pytest.mark.integration


def _db(settings: Settings) -> DynamoDB:
    cfg = settings.dynamodb.model_copy(update={"table_prefix": f"arch{uuid.uuid4().hex[:6]}_"})
    db = DynamoDB(cfg)
    ensure_tables(db.client, cfg)
    return db


def _scan(db: DynamoDB) -> list[dict[str, object]]:
    items = db.client.scan(TableName=table_name(db.settings, PORTFOLIOS), ConsistentRead=True)["Items"]
    return sorted(items, key=lambda i: i["user_id"]["S"])


def test_items_come_back_as_they_were(settings: Settings, tmp_path: Path) -> None:
    source, target = _db(settings), _db(settings)
    for i in range(130):  # six batches
        source.client.put_item(TableName=table_name(source.settings, PORTFOLIOS), Item={
            "user_id": {"S": f"u{i:03}"}, "cash": {"N": f"{i}.25"}, "version": {"N": str(i)},
            "positions": {"M": {"ACME": {"N": str(i % 7)}}}, "tags": {"L": [{"S": "a"}, {"BOOL": True}]}})
    assert is_empty(target, PORTFOLIOS)
    progress: list[int] = []

    assert export_table(source, PORTFOLIOS, tmp_path / "p.jsonl.gz") == 130
    assert import_table(target, PORTFOLIOS, tmp_path / "p.jsonl.gz", progress.append) == 130
    assert sum(progress) == 130
    assert _scan(target) == _scan(source)
    assert not is_empty(target, PORTFOLIOS)
