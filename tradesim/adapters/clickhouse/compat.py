"""The smallest shim that lets the pinned clickhouse-connect talk to Debian's clickhouse-server 18.16.

Only what the client library cannot be told through its public options lives here. The other 18.16 gaps are
handled by how the adapter calls the library, each noted where it happens:

- no lz4/zstd HTTP compression → the client is built with ``compress=False`` (client.py);
- DESCRIBE returns ``comment_expression`` that the library's column model rejects → inserts pass
  ``column_type_names`` so the library never runs DESCRIBE (trades.py);
- no server-side ``{name:Type}`` parameters → queries use ``%(name)s`` placeholders, which the library binds
  on the client side (trades.py);
- no DateTime64 → times are stored as Int64 epoch microseconds (schema.py).
"""

from __future__ import annotations

from dataclasses import replace

from clickhouse_connect.driver._backend.operations import QueryOp  # private: valid for the pinned version only
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.httpclient import HttpClient

#: the probe clickhouse-connect runs while connecting; 18.16's system.settings has no `readonly` column
SETTINGS_PROBE = "SELECT name, value, readonly FROM system.settings"
#: the same probe for servers without that column. readonly=0 claims every setting is changeable, which holds
#: for the profile our generated users.xml gives `default` (no `readonly` limit).
LEGACY_SETTINGS_PROBE = "SELECT name, value, toUInt8(0) AS readonly FROM system.settings"


def is_missing_readonly_column(operation: object, error: Exception) -> bool:
    """True when `error` is an old server refusing the settings probe (and nothing else)."""
    return (isinstance(operation, QueryOp) and operation.text.startswith(SETTINGS_PROBE)
            and isinstance(error, DatabaseError) and "Unknown identifier: readonly" in str(error))


class CompatHttpClient(HttpClient):
    """HttpClient that retries its settings probe without `readonly` when the server is too old for it.

    Modern servers answer the original probe, so for them this class changes nothing.
    """

    def _execute_operation(self, operation):  # type: ignore[no-untyped-def]  # signature of the pinned base
        try:
            return super()._execute_operation(operation)
        except DatabaseError as exc:
            if not is_missing_readonly_column(operation, exc):
                raise
        legacy = replace(operation, text=operation.text.replace(SETTINGS_PROBE, LEGACY_SETTINGS_PROBE, 1))
        return super()._execute_operation(legacy)
