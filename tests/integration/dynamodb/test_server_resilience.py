"""The local DynamoDB server outlives clients that vanish in the middle of a request (a killed TaskManager)."""

from __future__ import annotations

import socket
import struct
import uuid
from pathlib import Path

import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.settings import Settings
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration


def _pid(supervisor: Supervisor) -> int | None:
    return {s.name: s for s in supervisor.status()}["dynamodb"].pid


def test_a_client_reset_mid_request_does_not_take_the_server_down(settings: Settings,
                                                                 supervisor: Supervisor) -> None:
    before = _pid(supervisor)
    for _ in range(3):
        with socket.create_connection((settings.dynamodb.host, settings.dynamodb.port), timeout=5) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
                      b"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{\"Li")
            # close with RST, as the kernel does for a process killed with SIGKILL mid-send
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    db = DynamoDB(settings.dynamodb)
    try:
        assert "TableNames" in db.client.list_tables(Limit=1)
    finally:
        db.close()
    assert _pid(supervisor) == before


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def test_overwriting_an_item_between_table_listings_does_not_pile_up_old_versions(settings: Settings) -> None:
    """dynalite 4 left a LevelDB iterator open per ListTables (the health probe), Query and Scan; each pinned a
    snapshot, so compaction kept every overwritten version and the folder grew without bound (server.js closes
    them). 10,000 overwrites of one 6 KB item ≈ 60 MB written: with the leak the folder keeps about all of it;
    without, at most LevelDB's log (4 MB) and its level-0 files awaiting compaction (4 × ~4 MB). Measured: 39 MB
    with the leak, 3 MB without."""
    from tradesim.adapters.dynamodb.tables import PORTFOLIOS, table_name

    folder = settings.stack_dir / "dynamodb" / "data"
    db = DynamoDB(settings.dynamodb)
    table = table_name(settings.dynamodb, PORTFOLIOS)
    key = "leak-probe-" + uuid.uuid4().hex[:8]
    blob = "x" * 6000
    try:
        before = _folder_bytes(folder)
        for i in range(10_000):
            db.client.put_item(TableName=table, Item={"user_id": {"S": key}, "blob": {"S": f"{blob}{i}"}})
            if i % 20 == 0:
                db.client.list_tables(Limit=1)
                db.client.query(TableName=table, KeyConditionExpression="user_id = :k", Limit=1,
                                ExpressionAttributeValues={":k": {"S": key}})
        db.client.delete_item(TableName=table, Key={"user_id": {"S": key}})
    finally:
        db.close()
    grown_mb = (_folder_bytes(folder) - before) / 1e6
    assert grown_mb < 20, f"the data folder grew {grown_mb:.1f} MB for one 6 KB item"


def test_an_items_index_entries_follow_its_put_update_and_delete(settings: Settings) -> None:
    """The server writes an item and its index entries in one batch (server.js, point 6): the index holds exactly
    the item's current entry after each kind of write, including one that moves the entry to another key."""
    db = DynamoDB(settings.dynamodb)
    name = "index-writes-" + uuid.uuid4().hex[:8]
    client = db.client
    try:
        client.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("id", "owner", "at")],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{"IndexName": "by_owner", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"},
                                                   {"AttributeName": "at", "KeyType": "RANGE"}]}])
        wait_for(lambda: client.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE", 30, "the table")

        def index(owner: str) -> list[tuple[str, str, str]]:
            items = client.query(TableName=name, IndexName="by_owner", KeyConditionExpression="#o = :o",
                                 ExpressionAttributeNames={"#o": "owner"},
                                 ExpressionAttributeValues={":o": {"S": owner}})["Items"]
            return [(i["id"]["S"], i["at"]["S"], i.get("note", {}).get("S", "")) for i in items]

        client.put_item(TableName=name, Item={"id": {"S": "a"}, "owner": {"S": "u"}, "at": {"S": "1"}},
                        ConditionExpression="attribute_not_exists(id)")
        assert index("u") == [("a", "1", "")]
        client.update_item(TableName=name, Key={"id": {"S": "a"}}, UpdateExpression="SET note = :n",
                           ExpressionAttributeValues={":n": {"S": "x"}})
        assert index("u") == [("a", "1", "x")]
        client.update_item(TableName=name, Key={"id": {"S": "a"}}, UpdateExpression="SET #t = :t, #o = :o",
                           ExpressionAttributeNames={"#t": "at", "#o": "owner"},
                           ExpressionAttributeValues={":t": {"S": "2"}, ":o": {"S": "v"}})
        assert (index("u"), index("v")) == ([], [("a", "2", "x")])
        client.delete_item(TableName=name, Key={"id": {"S": "a"}})
        assert index("v") == []
        assert "Item" not in client.get_item(TableName=name, Key={"id": {"S": "a"}}, ConsistentRead=True)
    finally:
        client.delete_table(TableName=name)
        db.close()


def test_a_table_deleted_and_created_again_starts_empty_and_its_neighbours_keep_their_items(
        settings: Settings) -> None:
    """DeleteTable removes the table's items, index entries and tags by key range (server.js, point 7): a table
    created again under the same name has none of them, and the tables whose keys sort just before and just after
    its own keep theirs. (It guards the range, not the speed the range brought.)"""
    from botocore.exceptions import ClientError

    db = DynamoDB(settings.dynamodb)
    client = db.client
    base = "range-" + uuid.uuid4().hex[:8]
    name = base + "a"
    neighbours = (base + "a-x", base + "b")  # item-<name>-x~ sorts before item-<name>~, item-<base>b~ after it

    def create(table: str, items: int) -> str:
        arn: str = client.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("id", "owner")],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{"IndexName": "by_owner", "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}]}],
        )["TableDescription"]["TableArn"]
        wait_for(lambda: client.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE", 30, table)
        for i in range(items):
            client.put_item(TableName=table, Item={"id": {"S": f"{table}-{i}"}, "owner": {"S": "u"}})
        if items:
            client.tag_resource(ResourceArn=arn, Tags=[{"Key": "filled", "Value": table}])
        return arn

    def gone(table: str) -> bool:
        try:
            client.describe_table(TableName=table)
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False

    def contents(table: str, arn: str) -> tuple[set[str], set[str], list[dict[str, str]]]:
        items = client.scan(TableName=table, ConsistentRead=True)["Items"]
        indexed = client.query(TableName=table, IndexName="by_owner", KeyConditionExpression="#o = :o",
                               ExpressionAttributeNames={"#o": "owner"},
                               ExpressionAttributeValues={":o": {"S": "u"}})["Items"]
        tags = client.list_tags_of_resource(ResourceArn=arn).get("Tags", [])
        return {i["id"]["S"] for i in items}, {i["id"]["S"] for i in indexed}, tags

    try:
        create(name, 20)
        arns = {table: create(table, 20) for table in neighbours}
        client.delete_table(TableName=name)
        wait_for(lambda: gone(name), 30, "the deleted table to be gone")
        assert contents(name, create(name, 0)) == (set(), set(), [])
        for table, arn in arns.items():
            expected = {f"{table}-{i}" for i in range(20)}
            assert contents(table, arn) == (expected, expected, [{"Key": "filled", "Value": table}])
    finally:
        try:
            for table in (name, *neighbours):
                try:
                    client.delete_table(TableName=table)
                except ClientError:
                    pass  # not there, or still being created: a test table left behind, never the test's error
        finally:
            db.close()
