"""Accounts: one item per user holding the hash of its API key (never the key), found by the `by_key_hash` GSI.

An account is written `pending` by a create that has not answered yet, and finished once its portfolio is right:
the key of a pending one was never shown, so a create of it again may take it over with a key of its own. Each
create of a name writes the account with its own `generation` (a fencing token: the first create's 1, one more
for each take-over, written on the condition that the generation read is still there); a create's portfolio
reset stamps the portfolio item with it (`create_generation`) and is refused once the item carries a later one,
and its finish is refused once the account carries a later one, so a create that another took over changes
nothing after that other's reset. Items written before generations were kept read as generation 0.

Also resets a user's portfolio item with an optimistic-concurrency write on its `version`, because the execution
job changes the same item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.errors import conditional_write, translate
from tradesim.adapters.dynamodb.tables import ACCOUNTS, PORTFOLIOS, table_name
from tradesim.domain.errors import DomainError, PortfolioNotFound, VersionConflict

_to_dynamo = TypeSerializer().serialize
_from_dynamo = TypeDeserializer().deserialize


def hash_key(api_key: str) -> str:
    """What an account stores and is found by instead of its key: SHA-256 (keys are 256-bit random, so a fast
    hash is enough; no password stretching needed)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class AccountExists(DomainError):
    """An account with that user id was already created."""


class AccountTakenOver(DomainError):
    """A later create of the account's name took it over (its generation is on the account or the portfolio)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(f"a later create of account {user_id!r} took it over")


class AccountUnfinished(DomainError):
    """The account's create did not finish (it is `pending`): a create of it again finishes it."""

    def __init__(self, account: Account) -> None:
        self.account = account
        super().__init__(f"the create of account {account.user_id!r} did not finish")


@dataclass(frozen=True)
class Account:
    user_id: str
    api_key_hash: str
    starting_cash: Decimal
    created_at_ms: int
    #: requests/s this account's key may make; None: the API's default
    rate_limit_per_s: int | None = None
    #: written by a create that has not answered: its key was never shown (see the module docstring)
    pending: bool = False
    #: which create of the name wrote it (see the module docstring); 0: written before generations were kept
    generation: int = 0


def _item(account: Account) -> dict[str, Any]:
    item: dict[str, Any] = {"user_id": account.user_id, "api_key_hash": account.api_key_hash,
                            "starting_cash": account.starting_cash, "created_at_ms": account.created_at_ms}
    if account.rate_limit_per_s is not None:
        item["rate_limit_per_s"] = account.rate_limit_per_s
    if account.pending:
        item["pending"] = True
    if account.generation:
        item["generation"] = account.generation
    return {k: _to_dynamo(v) for k, v in item.items()}


def _account(item: dict[str, Any]) -> Account:
    data = {k: _from_dynamo(v) for k, v in item.items()}
    limit = data.get("rate_limit_per_s")
    return Account(user_id=data["user_id"], api_key_hash=data["api_key_hash"], starting_cash=data["starting_cash"],
                   created_at_ms=int(data["created_at_ms"]), rate_limit_per_s=None if limit is None else int(limit),
                   pending=bool(data.get("pending", False)), generation=int(data.get("generation", 0)))


def _generation_is(generation: int) -> tuple[str, dict[str, Any]]:
    """A condition that the account's generation is `generation` (missing counts as 0), and its values."""
    if generation == 0:
        return "attribute_not_exists(generation)", {}
    return "generation = :g", {":g": {"N": str(generation)}}


class AccountStore:
    """Thread-safe (one shared low-level client)."""

    def __init__(self, db: DynamoDB) -> None:
        self.db = db
        self.table = table_name(db.settings, ACCOUNTS)
        self.portfolios = table_name(db.settings, PORTFOLIOS)

    def create(self, account: Account) -> None:
        """Raises AccountExists, Unavailable."""
        try:
            self.db.client.put_item(TableName=self.table, Item=_item(account),
                                    ConditionExpression="attribute_not_exists(user_id)")
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"create account {account.user_id!r}", AccountExists(account.user_id)) from None

    def take_over(self, account: Account, seen: Account) -> bool:
        """Write `account` (with its own generation) over a pending one of its name that is still `seen` (its key
        hash and generation: no other create took it over since it was read); False if it is not. Raises
        Unavailable."""
        same, values = _generation_is(seen.generation)
        return conditional_write(partial(
            self.db.client.put_item, TableName=self.table, Item=_item(account),
            ConditionExpression=f"attribute_exists(pending) AND api_key_hash = :seen AND {same}",
            ExpressionAttributeValues={":seen": {"S": seen.api_key_hash}, **values}),
            f"take over account {account.user_id!r}")

    def finish(self, user_id: str, api_key_hash: str, generation: int) -> bool:
        """The account is no longer pending, if its key hash and generation are still the create's; False if
        another create took it over. Raises Unavailable."""
        same, values = _generation_is(generation)
        return conditional_write(partial(
            self.db.client.update_item, TableName=self.table, Key={"user_id": {"S": user_id}},
            UpdateExpression="REMOVE pending", ConditionExpression=f"api_key_hash = :h AND {same}",
            ExpressionAttributeValues={":h": {"S": api_key_hash}, **values}),
            f"finish account {user_id!r}")

    def set_key_hash(self, user_id: str, api_key_hash: str) -> bool:
        """Replace the account's key hash (the old key stops matching); False if there is no such account.
        Raises AccountUnfinished (a pending account is for a create of it again to finish, which would stop a key
        handed out here), VersionConflict, Unavailable."""
        what = f"set the key of {user_id!r}"
        for _ in range(2):  # a failed condition is read to tell why; a pending account found finished: once more
            if conditional_write(partial(
                    self.db.client.update_item, TableName=self.table, Key={"user_id": {"S": user_id}},
                    UpdateExpression="SET api_key_hash = :h",
                    ConditionExpression="attribute_exists(user_id) AND attribute_not_exists(pending)",
                    ExpressionAttributeValues={":h": {"S": api_key_hash}}), what):
                return True
            current = self.get(user_id)
            if current is None:
                return False
            if current.pending:
                raise AccountUnfinished(current)
        raise VersionConflict(f"{what}: the account kept changing; retry")

    def get(self, user_id: str) -> Account | None:
        """Raises Unavailable."""
        try:
            answer = self.db.client.get_item(TableName=self.table, Key={"user_id": {"S": user_id}},
                                             ConsistentRead=True)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"get account {user_id!r}") from None
        item = answer.get("Item")
        return _account(item) if item else None

    def by_key_hash(self, api_key_hash: str) -> Account | None:
        """The finished account whose key hashes to api_key_hash, or None: a pending one authenticates nothing (its
        key was never shown, and a create of it again replaces it). Raises Unavailable."""
        try:
            answer = self.db.client.query(
                TableName=self.table, IndexName="by_key_hash", KeyConditionExpression="api_key_hash = :h",
                ExpressionAttributeValues={":h": {"S": api_key_hash}}, Limit=1)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "look up an API key") from None
        account = _account(answer["Items"][0]) if answer.get("Items") else None
        return None if account is None or account.pending else account

    def list(self) -> list[Account]:
        """Every account (a Scan: an admin listing, not a hot path). Raises Unavailable."""
        accounts: list[Account] = []
        request: dict[str, Any] = {"TableName": self.table}
        try:
            while True:
                answer = self.db.client.scan(**request)
                accounts += [_account(i) for i in answer.get("Items", [])]
                if "LastEvaluatedKey" not in answer:
                    break
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "list accounts") from None
        return sorted(accounts, key=lambda a: a.user_id)

    def reset_portfolio(self, user_id: str, cash: Decimal, now_ms: Callable[[], int], attempts: int = 5, *,
                        generation: int | None = None) -> int:
        """Back to `cash` and no positions, marked reset at `now_ms()` (read again for each attempt, so the mark
        is as close as can be to the write that wipes the executions before it); returns the new version.

        Recorded outcomes stay, so a replayed old order still finds its first outcome and is not applied again.
        The write is conditional on the version just read (the execution job writes the same item); raises
        PortfolioNotFound, VersionConflict (after `attempts` lost races), Unavailable.

        `generation`: an account create's reset (see the module docstring): it also stamps the item with that
        generation, on the condition that the item's stamp is not a later one (missing counts as 0); raises
        AccountTakenOver if it is. Without it the stamp is left as it is.
        """
        what = f"reset portfolio {user_id!r}"
        read = "version" if generation is None else "version, create_generation"
        for _ in range(attempts):
            try:
                answer = self.db.client.get_item(TableName=self.portfolios, Key={"user_id": {"S": user_id}},
                                                 ConsistentRead=True, ProjectionExpression=read)
            except (BotoCoreError, ClientError) as exc:
                raise translate(exc, what) from None
            if "Item" not in answer:
                raise PortfolioNotFound(user_id)
            item = answer["Item"]
            version = int(_from_dynamo(item.get("version", {"N": "0"})))
            update = "SET cash = :cash, positions = :empty, version = :next, reset_at_ms = :at"
            condition = "version = :v"
            values: dict[str, Any] = {}
            if generation is not None:
                if int(_from_dynamo(item.get("create_generation", {"N": "0"}))) > generation:
                    raise AccountTakenOver(user_id)
                update += ", create_generation = :g"
                condition += " AND (attribute_not_exists(create_generation) OR create_generation <= :g)"
                values[":g"] = {"N": str(generation)}
            at_ms = now_ms()
            if conditional_write(partial(
                    self.db.client.update_item, TableName=self.portfolios, Key={"user_id": {"S": user_id}},
                    UpdateExpression=update, ConditionExpression=condition,
                    ExpressionAttributeValues={":cash": _to_dynamo(cash), ":empty": {"M": {}}, ":at": {"N": str(at_ms)},
                                               ":v": {"N": str(version)}, ":next": {"N": str(version + 1)},
                                               **values}),
                    what):
                return version + 1
            # the execution job (or a later create) wrote in between: read again
        raise VersionConflict(f"{what}: the portfolio kept changing; retry")
