"""Errors of the stack runtime; the CLI maps `UserError` to exit 2 and `StackError` to exit 1."""

from __future__ import annotations


class StackError(Exception):
    """Something in the environment or a server went wrong; the message says what and how to fix it."""


class UserError(StackError):
    """The user asked for something invalid (bad setting, unknown component)."""


class ProvisionError(StackError):
    """Obtaining a component's artifacts failed (missing tool, failing package client)."""

    def __init__(self, component: str, cause: str, output_tail: str = "") -> None:
        self.component = component
        self.cause = cause
        self.output_tail = output_tail
        message = f"{component}: {cause}"
        if output_tail:
            message += "\n--- last lines of output ---\n" + output_tail
        super().__init__(message)


class PortInUseError(StackError):
    """A port a component needs is taken by a process that is not ours."""


class StartError(StackError):
    """A component did not become healthy before its deadline, or died while starting."""
