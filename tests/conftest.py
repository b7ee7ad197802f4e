"""Options shared by all tests."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack-only",
        default=None,
        help="Comma-separated components the integration session starts (default: all). "
        "Handy while working on one server: pytest tests/integration/redis --stack-only redis",
    )
