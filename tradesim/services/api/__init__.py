"""The order API: accounts, orders, health and metrics over HTTP (FastAPI on uvicorn)."""
