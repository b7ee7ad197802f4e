"""Reads scenario YAML and reports every problem at its line.

The YAML is composed into nodes first (they carry line marks) and constructed from those same nodes, so a
pydantic error at `symbols[0].volatility` can be mapped back to the line of that key.
"""

from __future__ import annotations

import difflib
import errno
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tradesim.scenarios.errors import CrossFieldError, Problem, ScenarioError, display_path, format_loc
from tradesim.scenarios.model import Scenario, model_field_names
from tradesim.text import one_line, validation_message

SUFFIXES = (".yaml", ".yml")
#: a scenario file's size and its values after alias expansion are bounded: a file is read whole and validated
MAX_FILE_BYTES = 1_048_576
MAX_VALUES = 100_000
Loc = tuple[str | int, ...]
_STR, _MERGE = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"


def load_scenario(path: Path, *, check_data: bool = True) -> Scenario:
    """Parse and validate a scenario; with `check_data`, also check every row of its CSV source.

    Raises ScenarioError listing every problem found (file:line: field: message).
    """
    shown = display_path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError.one(shown, "", f"the file is {size:,} bytes; scenario files are at most "
                                    f"{MAX_FILE_BYTES:,} (put market data in a CSV source)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError.one(shown, "", f"cannot read: {reason}") from None
    root, data = _parse(text, shown)
    try:
        scenario = Scenario.model_validate(data, context={"base_dir": path.parent.absolute()})
    except ValidationError as exc:
        problems = [p for err in exc.errors() for p in _problems(err, root, shown)]
        raise ScenarioError(sorted(problems, key=lambda p: p.line or 0)) from None
    if check_data and scenario.source is not None:
        csv_path = scenario.source.csv
        at, _ = _locate(root, ("source", "csv"))
        if not _is_file(csv_path):
            raise ScenarioError([Problem(shown, at, "source.csv", f"{_not_a_file(csv_path)}: "
                                         f"{display_path(csv_path)}")])
        replayed, rows = scenario.replay_summary()  # raises ScenarioError naming the CSV file, column and line
        if rows == 0:  # a run of it would find no tick to trade on (exit 3, after creating its accounts)
            raise ScenarioError([Problem(shown, at, "source.csv", f"{display_path(csv_path)} holds no rows")])
        both = sorted(set(replayed) & {s.symbol for s in scenario.symbols})
        if both:  # two sources numbering one symbol's ticks each from 1: the cache and the book drop the repeats
            raise ScenarioError([Problem(shown, at, "source.csv", f"{', '.join(both)} also under symbols: a symbol "
                                         "is either generated or replayed, not both")])
        unknown = scenario.unknown_symbols(scenario.symbol_names())
        if unknown:
            raise ScenarioError([Problem(shown, line, format_loc(clean), message)
                                 for line, clean, message in ((*_locate(root, loc), m) for loc, m in unknown)])
    return scenario


def scenario_files(search_dir: Path) -> list[Path]:
    """Scenario files of a folder, sorted by name."""
    if not search_dir.is_dir():
        return []
    return sorted(p for p in search_dir.iterdir() if p.suffix in SUFFIXES and _is_file(p))


def _is_file(path: Path) -> bool:
    """`path.is_file()`, False also for a name too long for the file system (which raises there)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _not_a_file(path: Path) -> str:
    """Why a path that should name a file does not: a folder or a FIFO was reported as missing."""
    try:
        path.stat()
    except ValueError:
        return "not a file name (it holds a NUL character)"
    except OSError as exc:  # missing, a dangling link, a loop of links, a name too long, or not readable
        return "file not found" if exc.errno != errno.ENAMETOOLONG else "the file name is too long"
    return "not a regular file (a folder, a FIFO or a device)"


def find_scenario(name_or_path: str, search_dir: Path) -> Path:
    """A bare name ("calm") is looked up in `search_dir`; anything path-like is taken as a path."""
    if not name_or_path.strip():
        raise ScenarioError.one("scenario", "", "empty: give a scenario's name (`tradesim scenarios list`) or a "
                                "file's path")
    as_path = Path(name_or_path)
    if as_path.suffix in SUFFIXES or len(as_path.parts) > 1:
        if _is_file(as_path):
            return as_path
        raise ScenarioError.one(name_or_path, "", _not_a_file(as_path))
    for suffix in SUFFIXES:
        candidate = search_dir / f"{name_or_path}{suffix}"
        if _is_file(candidate):
            return candidate
    names = ", ".join(p.stem for p in scenario_files(search_dir)) or "none"
    raise ScenarioError.one(name_or_path, "",
                            f"unknown scenario (available in {display_path(search_dir)}: {names})")


class _BadValue(Exception):
    """A scalar YAML could resolve but not build (2024-02-30, a 5,000-digit number), with its node's place."""

    def __init__(self, node: yaml.Node, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.node, self.cause = node, cause


#: YAML 1.1's base-60 numbers (`1:30` is 90), numbers with underscores (`1_85.50` is 185.5) and octal ones (`0100`
#: is 64, while `090` is text): a scenario means no such thing (the second is a typo as likely as a separator, the
#: third a padded decimal), so they stay text and fail where a number is due, instead of becoming another number
#: without a word
_SEXAGESIMAL = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|\.?[0-9][0-9.]*_[0-9_.eE+-]*|0[0-7]+)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader without base-60 numbers, whose construction failures carry the node that failed."""

    yaml_implicit_resolvers = {
        first: ([("tag:yaml.org,2002:str", _SEXAGESIMAL)] if isinstance(first, str) and first
                and first in "+-0123456789" else []) + list(resolvers)
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # the innermost node that failed; outer ones pass it on
            raise _BadValue(node, exc) from None


def _parse(text: str, shown: str) -> tuple[yaml.MappingNode, Any]:
    try:
        loader = _Loader(text)  # the reader checks every character here already
    except yaml.YAMLError as exc:
        raise ScenarioError.one(shown, "yaml", f"invalid YAML: {one_line(exc)}") from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ScenarioError.one(shown, "", "empty file", 1)
        if not isinstance(root, yaml.MappingNode):
            raise ScenarioError.one(shown, "", "must be a mapping of keys to values", root.start_mark.line + 1)
        expanded = _expanded_size(root, {})
        if expanded > MAX_VALUES:
            raise ScenarioError.one(shown, "yaml", f"the document holds more than {MAX_VALUES:,} values (counting "
                                    "each value an alias repeats); put market data in a CSV source", 1)
        # before construction, which copies a merge's (`<<: *base`) keys into the mapping: a key that overrides
        # one of them is not a duplicate
        problems = _duplicate_keys(root, shown, (), set())
        if problems:
            raise ScenarioError(problems)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError.one(shown, "yaml", f"invalid YAML: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError.one(shown, "yaml", f"invalid YAML: {exc}") from None
    except (ValueError, OverflowError) as exc:  # built outside any one node's construction (none known today)
        raise ScenarioError.one(shown, "yaml", f"invalid value: {one_line(exc)[:200]}") from None
    except _BadValue as bad:  # a number too long to convert, a date out of range
        text = one_line(bad.cause)
        if "integer string conversion" in text:
            text = "a number has more than 4,300 digits"
        where = _loc_of(root, bad.node) if root is not None else ()
        raise ScenarioError.one(shown, format_loc(where) or "yaml",
                                f"invalid value: {text[:200]}", bad.node.start_mark.line + 1) from None
    except RecursionError:
        raise ScenarioError.one(shown, "yaml", "nested too deeply") from None
    finally:
        loader.dispose()
    return root, data


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the node stands for once its aliases are expanded (aliases share nodes: memoized, so
    this is linear in the file even when the expansion is not). Capped at MAX_VALUES + 1."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_VALUES + 1  # a node that contains itself expands without end
    total = 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            total += _expanded_size(key, sizes) + _expanded_size(value, sizes)
            if total > MAX_VALUES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, sizes)
            if total > MAX_VALUES:
                break
    sizes[id(node)] = min(total, MAX_VALUES + 1)
    return sizes[id(node)]


def _duplicate_keys(node: yaml.Node, shown: str, loc: Loc, visited: set[int]) -> list[Problem]:
    """PyYAML keeps the last of duplicate keys silently; a scenario must not. Each node once: an alias shares
    the node it names, which is checked where it is written."""
    if id(node) in visited:
        return []
    visited.add(id(node))
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            # `1:`, `2024-01-01:`, `~:`: a key the model would see as no text (a strategy's params are its own)
            if key.tag not in (_STR, _MERGE) and loc[:2] != ("strategy", "params"):
                scalar = isinstance(key, yaml.ScalarNode)
                problems.append(Problem(shown, key.start_mark.line + 1, format_loc((*loc, name if scalar else "?")),
                                        f"a key must be text: quote it ('{name}')" if scalar
                                        else "a key must be text, not a list or a mapping"))
            if name in seen:
                problems.append(Problem(shown, key.start_mark.line + 1, format_loc((*loc, name)), "duplicate key"))
            seen.add(name)
            problems += _duplicate_keys(value, shown, (*loc, name), visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, shown, (*loc, i), visited)
    return problems


def _loc_of(root: yaml.Node, target: yaml.Node) -> Loc:
    """Where in the document `target` is written (keys and list indexes); () when it is not found below `root`."""
    todo: list[tuple[yaml.Node, Loc]] = [(root, ())]
    seen: set[int] = set()
    while todo:
        node, loc = todo.pop()
        if node is target:
            return loc
        if id(node) in seen:
            continue
        seen.add(id(node))
        # pushed last first, so the search goes in document order: a shared node is named where it is defined
        # (an anchor comes before its aliases), at the line its mark gives
        if isinstance(node, yaml.MappingNode):
            todo += reversed([(n, (*loc, str(k.value))) for k, v in node.value for n in (k, v)])
        elif isinstance(node, yaml.SequenceNode):
            todo += reversed([(item, (*loc, i)) for i, item in enumerate(node.value)])
    return ()


def _locate(root: yaml.Node, loc: Loc) -> tuple[int, Loc]:
    """Line of the deepest key of `loc` present in the file, and `loc` without pydantic's union tags."""
    node: yaml.Node | None = root
    line = root.start_mark.line + 1
    shown: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in reversed(node.value):  # the last: a key written after a merge (`<<`) wins
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    shown.append(part)
                    break
            else:
                if i == len(loc) - 1:
                    shown.append(part)  # a missing or unknown key: point at its parent
                # otherwise a union tag pydantic inserts (volume → lognormal → sigma); it is not in the file
            continue
        if isinstance(node, yaml.ScalarNode) and isinstance(part, str):
            continue  # a union tag after a value written as a scalar (bars: {1s: 120} → count)
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            node = None
        shown.append(part)
    return line, tuple(shown)


def _problems(err: ErrorDetails, root: yaml.Node, shown: str) -> list[Problem]:
    loc: Loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, CrossFieldError):
        out = []
        for sub, message in cause.items:
            line, clean = _locate(root, (*loc, *sub))
            out.append(Problem(shown, line, format_loc(clean), message))
        return out
    line, clean = _locate(root, loc)
    return [Problem(shown, line, format_loc(clean) or "$", _message(err, clean))]


#: keys an earlier draft of the format reserved under another name
_RENAMED = {"expectations": "expect"}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _message(err: ErrorDetails, loc: Loc) -> str:
    """pydantic's wording, shortened where a scenario author needs something more direct."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        if len(loc) == 1 and loc[0] in _RENAMED:
            return f"unknown field (did you mean {_RENAMED[str(loc[-1])]!r}?)"
        key, known = str(loc[-1]) if loc else "", model_field_names()
        if key in known:  # a field of another part of the format: "did you mean" itself would say nothing
            return "unknown field here (it belongs to another part of a scenario)"
        close = difflib.get_close_matches(key, sorted(known), n=1)
        return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "must be >= 0", not ">= 0.0"
        shown = re.sub(r"^Decimal\('(.*)'\)$", r"\1", str(bound))  # pydantic hands a Decimal bound as its repr
        return f"must be {_BOUNDS[kind]} {shown}"
    if kind == "timezone_aware":
        return "needs a UTC offset, e.g. 2024-01-02T14:30:00Z"
    if kind == "path_type":
        return "must be a file path (text)"
    if kind == "union_tag_not_found":
        return "needs `kind` (lognormal or poisson)"
    return validation_message(err)
