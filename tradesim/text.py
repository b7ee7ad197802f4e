"""Text shown to users on one line."""

from __future__ import annotations


def one_line(value: object) -> str:
    """`str(value)` with every run of whitespace (newlines, tabs, a quoted value's own) made one space: a message
    that quotes user input stays one readable line."""
    try:
        text = str(value)
    except Exception:  # user code's exception whose __str__ fails: a message must still be printed
        return ""
    return " ".join(text.split())


def error_line(exc: BaseException) -> str:
    """An exception's message on one line, or its type's name when it has none (a bare `KeyError()`)."""
    return one_line(exc) or type(exc).__name__


def visible(text: str) -> str:
    """`text` with every character a terminal would not show as itself (control characters such as ESC or a
    newline, zero-width and bidirectional marks, unassigned code points) written as its Python escape: a quoted
    value shows what it holds and cannot restyle the terminal or start a line of its own."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def validation_message(error: object) -> str:
    """A pydantic error's message as a person reads it: a symbol's, a user id's or an id's pattern in words, and
    without the "Value error, " or "Assertion failed, " pydantic puts before a validator's own words."""
    from tradesim.domain.events import PATTERN_WORDS

    if not isinstance(error, dict):
        return str(error)
    pattern = (error.get("ctx") or {}).get("pattern")
    if error.get("type") == "string_pattern_mismatch" and pattern in PATTERN_WORDS:
        return PATTERN_WORDS[pattern]
    return str(error.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
