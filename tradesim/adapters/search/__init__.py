"""Search read model (OpenSearch): order outcomes in concrete indices behind the `trades` alias, their mapping,
idempotent writes, paged search and the alias switch of a rebuild."""
