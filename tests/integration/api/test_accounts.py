"""Accounts: admin-only creation returning the key once (stored hashed), /accounts/me, reset."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.adapters.dynamodb.tables import ACCOUNTS, table_name
from tradesim.settings import Settings
from tradesim.testing.waiting import wait_for

from .conftest import User

pytestmark = pytest.mark.integration


def test_create_returns_the_key_once_and_stores_only_its_hash(http: httpx.Client, new_user: Callable[..., User],
                                                              settings: Settings) -> None:
    u = new_user(cash="2500.50")
    me = http.get("/accounts/me", headers=u.auth)
    assert me.status_code == 200
    assert me.json() == {**me.json(), "user_id": u.user_id, "starting_cash": "2500.50", "cash": "2500.50",
                         "positions": {}}
    db = DynamoDB(settings.dynamodb)
    item = db.client.get_item(TableName=table_name(settings.dynamodb, ACCOUNTS), Key={"user_id": {"S": u.user_id}})
    stored = str(item["Item"])
    assert u.key not in stored
    assert item["Item"]["api_key_hash"]["S"] == hashlib.sha256(u.key.encode()).hexdigest()
    db.close()


def test_create_needs_the_admin_key(http: httpx.Client, user: User) -> None:
    body = {"name": "nobody-admin", "cash": "1"}
    missing = http.post("/accounts", json=body)
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    as_user = http.post("/accounts", json=body, headers=user.auth)
    assert as_user.status_code == 403
    assert as_user.json()["code"] == "admin_required"


def test_duplicate_name_is_409(http: httpx.Client, user: User, admin_key: str) -> None:
    again = http.post("/accounts", json={"name": user.user_id, "cash": "5"},
                      headers={"Authorization": f"Bearer {admin_key}"})
    assert again.status_code == 409
    assert again.json()["code"] == "account_exists"


def test_reset_restores_starting_cash_and_drops_positions_but_keeps_outcomes(
        http: httpx.Client, user: User, admin_key: str, settings: Settings) -> None:
    store = PortfolioStore(DynamoDB(settings.dynamodb))
    # a fill as the execution job would write it
    store.apply_fill(user.user_id, "o_reset_1", Decimal("-1005.00"), "ACME", 10)
    assert http.get("/accounts/me", headers=user.auth).json()["positions"] == {"ACME": 10}
    before = store.get(user.user_id)
    assert before is not None
    reset = http.post(f"/accounts/{user.user_id}/reset", headers={"Authorization": f"Bearer {admin_key}"})
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"user_id": user.user_id, "cash": "100000.00", "version": before.version + 1}
    after = store.get(user.user_id)
    assert after is not None
    assert (after.cash, after.positions) == (Decimal("100000"), {})
    assert "o_reset_1" in after.outcomes  # a replayed old order must still find its recorded outcome
    assert http.post(f"/accounts/{user.user_id}/reset", headers=user.auth).status_code == 403
    unknown = http.post("/accounts/nosuchuser-x/reset", headers={"Authorization": f"Bearer {admin_key}"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "account_not_found")
    store.db.close()


def test_a_rotated_key_replaces_the_old_one(http: httpx.Client, user: User, admin_key: str,
                                            settings: Settings) -> None:
    assert http.get("/accounts/me", headers=user.auth).status_code == 200  # cached in a worker
    rotated = http.post(f"/accounts/{user.user_id}/rotate-key", headers={"Authorization": f"Bearer {admin_key}"})
    assert rotated.status_code == 200, rotated.text
    new = {"Authorization": f"Bearer {rotated.json()['api_key']}"}
    assert http.get("/accounts/me", headers=new).json()["user_id"] == user.user_id
    # every worker lets the old key go within its cache time
    wait_for(lambda: all(http.get("/accounts/me", headers=user.auth).status_code == 401 for _ in range(6)),
             settings.api.auth_cache_s + 10, "the old key refused")
    assert http.post("/accounts/nosuchuser/rotate-key",
                     headers={"Authorization": f"Bearer {admin_key}"}).status_code == 404
    assert http.post(f"/accounts/{user.user_id}/rotate-key", headers=new).status_code == 403  # admin only


def test_an_interrupted_create_leaves_no_blocked_name(http: httpx.Client, admin_key: str,
                                                      settings: Settings) -> None:
    """The portfolio is written first: what an interrupted create leaves (a portfolio, no account) is taken
    over by the next create of the name, with that create's cash."""
    name = "orphan" + secrets.token_hex(4)
    db = DynamoDB(settings.dynamodb)
    PortfolioStore(db).create(name, Decimal("5"))  # as a create that failed after its first write
    created = http.post("/accounts", json={"name": name, "cash": "700"},
                        headers={"Authorization": f"Bearer {admin_key}"})
    assert created.status_code == 201, created.text
    me = http.get("/accounts/me", headers={"Authorization": f"Bearer {created.json()['api_key']}"}).json()
    assert (me["cash"], me["starting_cash"]) == ("700.00", "700.00")
    again = http.post("/accounts", json={"name": name, "cash": "1"}, headers={"Authorization": f"Bearer {admin_key}"})
    assert (again.status_code, again.json()["code"]) == (409, "account_exists")
    db.close()
