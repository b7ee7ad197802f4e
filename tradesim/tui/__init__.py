"""Textual TUI; talks to the system only through the public HTTP/WebSocket APIs."""
