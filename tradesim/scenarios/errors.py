"""Scenario errors point at the exact place to fix: file, line, field.

Deliberately not a `UserError`: the scenarios package stays free of the stack runtime; the CLI maps
`ScenarioError` to exit 2 (see `tradesim.cli.errors`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tradesim.text import visible


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a scenario (or the CSV it replays)."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        parts = [p for p in (where, self.field, self.message) if p]
        return visible(": ".join(parts))  # field names and messages quote the file's own keys and values


class ScenarioError(Exception):
    """A scenario cannot be used; `str()` is one `file:line: field: message` line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ScenarioError needs at least one problem")
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, file: str | Path, field: str, message: str, line: int | None = None) -> ScenarioError:
        return cls([Problem(display_path(file), line, field, message)])

    @property
    def file(self) -> str:
        return self.problems[0].file

    @property
    def field(self) -> str:
        return self.problems[0].field

    @property
    def line(self) -> int | None:
        return self.problems[0].line


class CrossFieldError(ValueError):
    """Raised by model validators so the loader can report the offending sub-field, not the whole section.

    pydantic keeps the exception in the error's `ctx`; `items` holds (location below the model, message).
    """

    def __init__(self, items: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.items = items
        super().__init__("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in items))


def format_loc(loc: tuple[str | int, ...]) -> str:
    """('symbols', 0, 'volatility') → 'symbols[0].volatility'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def display_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(p)
