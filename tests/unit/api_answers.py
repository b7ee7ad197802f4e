"""The API's error handlers on their own: what a request answers when its route raises."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from tradesim.services.api import errors


def answer_to_raising(refusal: Exception, retry_after_s: int = 1) -> httpx.Response:
    """The answer to a request whose route raises `refusal`, with the handlers installed as the API installs them."""
    app = FastAPI()
    errors.install(app, retry_after_s)

    @app.get("/raises")
    async def raises() -> None:
        raise refusal

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/raises")

    return asyncio.run(get())
