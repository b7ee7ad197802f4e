"""The read routes' query check (`deps.EXACT_QUERY`), on an app of its own: no server."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query

from tests.unit.api_answers import answer_to_raising
from tradesim.adapters.clickhouse.errors import ClickHouseRefused
from tradesim.adapters.search.errors import SearchRequestError
from tradesim.services.api import errors
from tradesim.services.api.deps import EXACT_QUERY


def _user(user: Annotated[str | None, Query()] = None) -> str | None:
    return user


def _get(params: Any = None) -> httpx.Response:
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
            return await client.get("/things", params=params)

    return asyncio.run(get())


def _app() -> FastAPI:
    router = APIRouter(dependencies=[EXACT_QUERY])

    @router.get("/things")
    async def things(who: Annotated[str | None, Depends(_user)], symbol: str | None = None,
                     from_: Annotated[str | None, Query(alias="from")] = None) -> dict[str, str | None]:
        return {"who": who, "symbol": symbol, "from": from_}

    app = FastAPI()
    errors.install(app, 1)
    app.include_router(router)
    return app


def test_the_parameters_of_the_route_and_its_dependencies_pass_once_each() -> None:
    answer = _get({"user": "a", "symbol": "X", "from": "1"})
    assert (answer.status_code, answer.json()) == (200, {"who": "a", "symbol": "X", "from": "1"})
    assert _get().status_code == 200


def test_an_unknown_or_repeated_parameter_is_a_422_problem() -> None:
    unknown = _get({"symbl": "X"})
    assert (unknown.status_code, unknown.json()["code"]) == (422, "invalid_request")
    assert unknown.json()["message"] == "query.symbl: not a parameter of this route (it takes: from, symbol, user)"
    twice = _get([("symbol", "X"), ("symbol", "Y")])
    assert (twice.status_code, twice.json()["message"]) == (422, "query.symbol: given more than once; give it once")
    assert twice.json()["errors"] == [{"loc": ["query", "symbol"], "msg": "given more than once; give it once",
                                       "type": "extra_forbidden"}]


@pytest.mark.parametrize("refusal", [
    ClickHouseRefused("ClickHouse at http://127.0.0.1:1 refused: HTTP status 404"),
    SearchRequestError("search trades", 400, "parsing_exception", "unknown query"),
])
def test_a_read_model_refusal_is_a_503_problem_not_a_500(refusal: Exception) -> None:
    """A probe: a ClickHouse address answered by another server gave every analytics route and /portfolio a 500."""
    answer = answer_to_raising(refusal)
    assert (answer.status_code, answer.json()["code"]) == (503, "read_model_error")
    assert answer.json()["message"] == f"a read model refused the request: {refusal}"


def test_a_refusing_analytics_model_degrades_the_portfolio_instead_of_failing_it() -> None:
    """A review: the 503 for a ClickHouse refusal took /portfolio's ledger answer (cash, positions) with it, where
    an analytics model that does not answer only leaves its fields null (`degraded`)."""
    from types import SimpleNamespace

    from tradesim.services.api.portfolio import costs

    async def refusing(*_args: object) -> None:
        raise ClickHouseRefused("ClickHouse at http://127.0.0.1:1 refused: HTTP status 404")

    res = SimpleNamespace(read_model=refusing, analytics=SimpleNamespace(executions=None, marks=None))
    assert asyncio.run(costs(res, "u1", ["AAPL"], 0, 0)) is None  # type: ignore[arg-type]
