"""The typer CLI: one sub-app or command module per file, no business logic."""
