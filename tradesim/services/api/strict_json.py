"""Request bodies parsed strictly: an object that names a field twice is refused, not read as its last value, and
`NaN`/`Infinity` are refused as the JSON they are not.

Python's `json` keeps the last of repeated names while other parsers keep the first, so a proxy, a log and the API
could each see a different order in one body; a trading API answers such a body 400 instead of guessing. Python's
`json` also reads `NaN` and `Infinity`, which no JSON client writes: 400 malformed, as any other non-JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class NotStrictJson(ValueError):
    """The body names a field twice in an object, or holds NaN or Infinity (FastAPI answers the body's ValueError
    400; errors.py words it)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise NotStrictJson(f"the body names {json.dumps(name)} twice in one object; send each field once")
        seen.add(name)
    raise AssertionError("unreachable: fewer names than pairs means one repeats")


def _constant(name: str) -> Any:
    raise NotStrictJson(f"the body holds {name}, which JSON has no spelling for; send a number")


class _StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_object, parse_constant=_constant)
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body may not repeat a name in any object."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictRequest(request.scope, request.receive))

        return strict
