"""Fuzz the live API with schemathesis against its own /openapi.json: no 5xx, every answer matches the schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tradesim.settings import Settings

from .conftest import User

pytestmark = pytest.mark.integration
CHECKS = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_schema_conformance", "response_headers_conformance", "negative_data_rejection"])


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert found, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    return found


@pytest.mark.parametrize("who", ["user", "admin"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(settings: Settings, new_user: Callable[..., User],
                                                           admin_key: str, who: str, tmp_path: Path) -> None:
    key = new_user().key if who == "user" else admin_key
    argv = [_st(), "run", f"{settings.api.client_url}/openapi.json", "-H", f"Authorization: Bearer {key}",
            "--checks", CHECKS, "--max-examples", "25", "--seed", "7", "--request-timeout", "10",
            "--phases", "examples,coverage,fuzzing"]
    if who == "admin":
        argv += ["--include-path-regex", "^/accounts"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
