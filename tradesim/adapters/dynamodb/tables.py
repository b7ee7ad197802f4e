"""The tables tradesim uses, their names (with the settings' prefix) and idempotent creation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tradesim.adapters.dynamodb.errors import error_code, translate
from tradesim.ports import Unavailable
from tradesim.settings import DynamoDBSettings

PORTFOLIOS = "Portfolios"
ORDERS = "Orders"
OPEN_ORDERS = "OpenOrders"
ACCOUNTS = "Accounts"


@dataclass(frozen=True)
class Index:
    """A global secondary index projecting all attributes."""

    name: str
    hash_key: str
    range_key: str | None = None


@dataclass(frozen=True)
class TableDef:
    name: str
    hash_key: str
    #: attribute name → DynamoDB scalar type ("S" or "N") of every key attribute, table and indexes
    key_types: dict[str, str]
    indexes: tuple[Index, ...] = ()
    range_key: str | None = None


TABLES: tuple[TableDef, ...] = (
    # cash, positions {symbol: qty}, outcomes {order_id: outcome}, version
    TableDef(PORTFOLIOS, "user_id", {"user_id": "S"}),
    # a user's orders, newest last: Query by_user with user_id (placed_at_ms is epoch millis, UTC)
    TableDef(ORDERS, "order_id", {"order_id": "S", "user_id": "S", "placed_at_ms": "N"},
             (Index("by_user", "user_id", "placed_at_ms"),)),
    # which of a user's orders rest in a book (a pointer: `Orders` holds the truth), so listing the open ones does
    # not depend on how many orders came after them; placed_order is the placing time in 15 digits, "#", the order id
    TableDef(OPEN_ORDERS, "user_id", {"user_id": "S", "placed_order": "S"}, range_key="placed_order"),
    # the order API authenticates by the hash of an API key, never by the key itself
    TableDef(ACCOUNTS, "user_id", {"user_id": "S", "api_key_hash": "S"}, (Index("by_key_hash", "api_key_hash"),)),
)


def table_name(settings: DynamoDBSettings, logical: str) -> str:
    return settings.table_prefix + logical


def _key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def create_table_request(settings: DynamoDBSettings, table: TableDef) -> dict[str, Any]:
    """CreateTable parameters; on-demand billing, so no capacity to size (dynalite and AWS both accept it)."""
    request: dict[str, Any] = {
        "TableName": table_name(settings, table.name),
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": t} for a, t in table.key_types.items()],
        "KeySchema": _key_schema(table.hash_key, table.range_key),
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.indexes:
        request["GlobalSecondaryIndexes"] = [
            {"IndexName": i.name, "KeySchema": _key_schema(i.hash_key, i.range_key),
             "Projection": {"ProjectionType": "ALL"}}
            for i in table.indexes
        ]
    return request


def _status(client: Any, name: str) -> str | None:
    """Table status, counting a GSI still being built as not ready; None if the table does not exist."""
    try:
        table = client.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    if any(i.get("IndexStatus", "ACTIVE") != "ACTIVE" for i in table.get("GlobalSecondaryIndexes", [])):
        return "CREATING"
    return str(table["TableStatus"])


def ensure_tables(client: Any, settings: DynamoDBSettings, timeout_s: float = 60.0) -> list[str]:
    """Create missing tables and wait until all are ACTIVE; returns the names created. Raises Unavailable."""
    created: list[str] = []
    try:
        for table in TABLES:
            name = table_name(settings, table.name)
            if _status(client, name) is not None:
                continue
            try:
                client.create_table(**create_table_request(settings, table))
                created.append(name)
            except ClientError as exc:
                if error_code(exc) != "ResourceInUseException":  # a concurrent `up` created it first
                    raise
        # dynalite (like AWS) reports CREATING for a while; using a table before ACTIVE fails
        deadline = time.monotonic() + timeout_s
        pending = [table_name(settings, t.name) for t in TABLES]
        while pending:
            pending = [n for n in pending if _status(client, n) != "ACTIVE"]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise Unavailable(f"tables not ACTIVE after {timeout_s:.0f} s: {', '.join(pending)}")
            time.sleep(0.1)
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, "creating tables") from None
    return created
