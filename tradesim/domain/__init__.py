"""The trading model: pure Python, no I/O, no client libraries (enforced by an import-linter contract)."""
