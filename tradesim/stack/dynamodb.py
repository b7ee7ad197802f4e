"""The DynamoDB API from dynalite 4 (DynamoDB on LevelDB), installed with `npm ci` from the lock file in the repo.

dynalite runs as a plain `node` process, so the supervisor stops it by pid like every other server. It has no
transactions, PartiQL or TTL; tradesim only uses single-item conditional writes, which it supports.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from tradesim.adapters.dynamodb.client import DynamoDB as DynamoDBClient
from tradesim.adapters.dynamodb.errors import DynamoDBError, translate
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.dynamodb.tables import OPEN_ORDERS, ensure_tables, table_name
from tradesim.ports import Unavailable
from tradesim.settings import DynamoDBSettings, redacted_text
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.errors import ProvisionError
from tradesim.stack.tools import Report, run_tool

PACKAGE_DIR = Path(__file__).parent / "node" / "dynalite"
PACKAGE_FILES = ("package.json", "package-lock.json")
#: our launcher: clean LevelDB close on SIGTERM, and a client reset mid-request cannot end the server (see it)
SERVER_JS = PACKAGE_DIR / "server.js"
#: dynalite 4 declares `engines.node >= 20` (Debian 12's own nodejs is 18; NodeSource's 20 works)
MIN_NODE = 20
NODE_FIX = "apt-get install -y nodejs npm"
#: dynalite keeps a new table CREATING this long (default 500 ms); `up` waits for ACTIVE either way
CREATE_TABLE_MS = 50


def node_major(node: str) -> int | None:
    try:
        out = run_tool("dynamodb", [node, "--version"], "node --version", timeout_s=30)
    except ProvisionError:
        return None
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else None


class DynamoDB(Component):
    name = "dynamodb"

    @property
    def _cfg(self) -> DynamoDBSettings:
        return self.settings.dynamodb

    @property
    def external(self) -> bool:
        return self._cfg.external

    def ports(self) -> list[PortSpec]:
        return [PortSpec(self._cfg.host, self._cfg.port, "TRADESIM_DYNAMODB__PORT")]

    def address(self) -> str:
        return self._cfg.endpoint or f"AWS DynamoDB ({self._cfg.region})"

    def version(self) -> str:
        package = json.loads((PACKAGE_DIR / "package.json").read_text())
        return str(package["dependencies"]["dynalite"])

    @property
    def install_dir(self) -> Path:
        """One folder per lock file content, so editing the lock never reuses a stale install."""
        lock_hash = hashlib.sha256((PACKAGE_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
        return self.settings.cache_dir / "dynalite" / f"{self.version()}-{lock_hash}"

    @property
    def cli_js(self) -> Path:
        return self.install_dir / "node_modules" / "dynalite" / "cli.js"

    def _node(self) -> str:
        node = shutil.which("node")
        if node is None:
            raise ProvisionError(self.name, f"Node.js (node) is not installed: `{NODE_FIX}`")
        return node

    def provision(self, report: Report) -> None:
        node = self._node()
        major = node_major(node)
        if major is None or major < MIN_NODE:
            found = f"Node.js {major}" if major else f"{node} (does not run)"
            raise ProvisionError(self.name, f"{found} found; dynalite {self.version()} needs Node.js {MIN_NODE}+: "
                                 "install a newer nodejs package (e.g. NodeSource's) or put node 20+ on PATH")
        marker = self.install_dir / ".complete"
        if marker.exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise ProvisionError(self.name, f"npm is not installed: `{NODE_FIX}`")
        staging = self.install_dir.with_name(self.install_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in PACKAGE_FILES:
            shutil.copy2(PACKAGE_DIR / name, staging / name)
        report(f"npm ci dynalite@{self.version()}")
        run_tool(self.name, [npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], "npm ci", cwd=staging,
                 timeout_s=600)
        # LevelDB is a native addon: prove a binary for this platform loads now, not at first start.
        run_tool(self.name, [node, "-e", "require('classic-level')"], "loading dynalite's LevelDB addon",
                 cwd=staging, timeout_s=60)
        shutil.rmtree(self.install_dir, ignore_errors=True)
        staging.rename(self.install_dir)
        marker.write_text("ok\n")

    def configure(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [
            self._node(), str(SERVER_JS), "--module", str(self.cli_js.parent),
            "--host", self._cfg.host,
            "--port", str(self._cfg.port),
            "--path", str(self.dir / "data"),
            "--createTableMs", str(CREATE_TABLE_MS),
        ]

    def _client(self, timeout_s: float) -> DynamoDBClient:
        return DynamoDBClient(self._cfg, timeout_s=timeout_s, max_attempts=1)

    def check_health(self) -> None:
        db = self._client(timeout_s=1.0)
        try:
            db.client.list_tables(Limit=1)
        except (BotoCoreError, ClientError) as exc:
            raise Unhealthy(f"ListTables at {self.shown_address()}: {translate(exc, 'ListTables')}") from None
        except (DynamoDBError, ValueError) as exc:  # no AWS credentials; an endpoint no HTTP client can form
            raise Unhealthy(f"ListTables at {self.shown_address()}: {redacted_text(str(exc))}") from None
        finally:
            db.close()

    def initialize(self, report: Report) -> None:
        db = self._client(timeout_s=5.0)
        try:
            created = ensure_tables(db.client, self._cfg)
            # a stack from before `OpenOrders`: its resting orders get their pointers (see OrderStore)
            noted = OrderStore(db).note_open_orders() if table_name(self._cfg, OPEN_ORDERS) in created else 0
        except (Unavailable, DynamoDBError) as exc:
            raise Unhealthy(str(exc)) from None
        finally:
            db.close()
        if created:
            report("created tables " + ", ".join(created) + (f"; noted {noted} resting orders open" if noted else ""))
