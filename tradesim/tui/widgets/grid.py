"""A keyed table on Textual's line API that repaints only the rows that changed.

DataTable re-renders every visible cell after any update (its caches are keyed by an update counter), which at a
few hundred price updates a second costs more than the whole budget of the TUI. Here each row's rendered line is
cached until that row's values change, and a changed row refreshes one line of the screen.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Value = str | Text  # a str is Rich markup
#: key, label, width (the widest value + 1: the space before it), right-aligned
Column = tuple[str, str, int, bool]


@lru_cache(maxsize=4096)
def _markup(value: str) -> tuple[str, Style | None]:
    text = Text.from_markup(value)
    return text.plain, _style_of(text)


def _style_of(text: Text) -> Style | None:
    style = text.spans[0].style if text.spans else text.style
    if not style:
        return None
    return style if isinstance(style, Style) else Style.parse(style)


def _parts(value: Value) -> tuple[str, Style | None]:
    """A cell's text and its one style."""
    return (value.plain, _style_of(value)) if isinstance(value, Text) else _markup(value)


_SUFFIXES = ((Decimal(1000), "k"), (Decimal(10) ** 6, "M"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 12, "T"))


def fit_right(plain: str, width: int) -> str:
    """A right-aligned cell's text in `width` columns with a space before it: a number too wide with fewer decimal
    places, else in thousands, millions, ... (`1.23M`; never its last digits alone), anything else cut with `…` in
    front. Rounded half up, as a reader rounds."""
    room = width - 1
    if len(plain) <= room:
        return plain.rjust(width)
    try:
        number = Decimal(plain.replace(",", ""))
    except ArithmeticError:
        number = None
    if number is not None and number.is_finite():
        sign = "+" if plain.startswith("+") else ""
        grouping = "," if "," in plain else ""
        decimals = max(0, -int(number.as_tuple().exponent))
        candidates = [(Decimal(1), "", places) for places in range(decimals - 1, -1, -1)]
        # the suffix that leaves 1 to 999 before the point, and the next (999.996k rounds to 1.00M, not 1000k)
        fitting = [i for i, (scale, _) in enumerate(_SUFFIXES) if scale <= abs(number) < scale * 1000]
        for scale, suffix in _SUFFIXES[fitting[0]:fitting[0] + 2] if fitting else ():
            candidates += [(scale, suffix, places) for places in (2, 1, 0)]
        for scale, suffix, places in candidates:
            shown = (number / scale).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
            if shown.is_zero():
                shown = abs(shown)  # not "-0.0"
            if suffix and abs(shown) >= 1000:
                continue  # the next suffix says it
            text = f"{sign}{shown:{grouping if not suffix else ''}.{places}f}{suffix}"
            if len(text) <= room:
                return text.rjust(width)
    return ("…" + plain[-(room - 1):] if room > 1 else "…"[:room]).rjust(width)


def _look(value: Value) -> object:
    """What a cell shows: a Text's style counts too (Text equality compares only text and spans)."""
    return (value.plain, str(value.style), value.spans) if isinstance(value, Text) else value


class Grid(ScrollView, can_focus=True):
    """Rows identified by a string key under a fixed header, with a row cursor. Rows put with a sort key are kept in
    descending order of it (the blotter: newest first); others in the order they came."""

    COLUMNS: Sequence[Column] = ()
    COMPONENT_CLASSES = {"grid--header", "grid--cursor", "grid--cursor-blurred"}
    DEFAULT_CSS = """
    Grid { height: 1fr; overflow-x: hidden; scrollbar-size-vertical: 1; }
    Grid > .grid--header { text-style: bold; color: $text-muted; }
    Grid > .grid--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    Grid > .grid--cursor-blurred { background: $block-cursor-blurred-background; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False), Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False), Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False), Binding("end", "edge(1)", "Last", show=False),
    ]

    class RowHighlighted(Message):
        """The cursor moved to another row."""

        def __init__(self, grid: Grid, key: str) -> None:
            super().__init__()
            self.grid, self.key = grid, key

        @property
        def control(self) -> Grid:
            return self.grid

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's parameter name
        super().__init__(id=id)
        self._keys: list[str] = []
        self._order: list[tuple[object, str]] = []  # (sort key, row key) ascending, of rows put with a sort key
        self._values: dict[str, tuple[Value, ...]] = {}
        self._lines: dict[str, Strip] = {}
        self._header: Strip | None = None
        self.cursor = 0
        self._cursor_key: str | None = None
        #: the cursor's row went (an order decided) and the cursor now stands on another row, which the user did not
        #: move to; False again once the user moves it or enters the panel
        self.cursor_fell = False
        self._on_drawn: list[Callable[[], None]] = []
        self._row_width = sum(c[2] for c in self.COLUMNS)
        self.virtual_size = Size(self._row_width, 1)

    # -- content -------------------------------------------------------------------------------------------------

    def put(self, key: str, values: tuple[Value, ...], sort_key: object = None) -> bool:
        """Show a row: appended (or, with a sort key, placed newest first) if new, else updated in place. False if
        nothing on screen changed (an update of a row out of sight is drawn when it is scrolled to)."""
        held = self._values.get(key)
        if held is not None:
            if all(_look(a) == _look(b) for a, b in zip(held, values, strict=True)):
                return False
            self._values[key] = values
            self._lines.pop(key, None)
            return self._refresh_row(self._keys.index(key))
        self._values[key] = values
        if sort_key is None:
            self._keys.append(key)
        else:
            at = bisect.bisect(self._order, (sort_key, key))
            self._order.insert(at, (sort_key, key))
            self._keys.insert(len(self._order) - 1 - at, key)
        self._changed_rows()
        return True

    def drop(self, keys: Iterable[str]) -> None:
        gone = {k for k in keys if k in self._values}
        if not gone:
            return
        for k in gone:
            del self._values[k]
            self._lines.pop(k, None)
        self._keys = [k for k in self._keys if k not in gone]
        self._order = [o for o in self._order if o[1] not in gone]
        self._changed_rows()

    def _changed_rows(self) -> None:
        """Rows were added or removed: keep the cursor on its row where it can, resize, repaint all."""
        fell = self._cursor_key is not None and self._cursor_key not in self._values
        if self._cursor_key in self._values:
            self.cursor = self._keys.index(self._cursor_key)
        self.cursor = max(0, min(self.cursor, len(self._keys) - 1))
        self._resize(len(self._keys) + 1)
        self.refresh()
        self._announce()
        if fell and self._cursor_key is not None:
            self.cursor_fell = True

    def _resize(self, height: int) -> None:
        """Set the virtual height. Setting `virtual_size` lays out the whole screen, which a blotter growing a row
        per execution cannot afford, so it is only done when the scrollbar appears or goes; otherwise the value is
        set quietly and the scrollbar told."""
        old = self.virtual_size.height
        if height == old:
            return
        viewport = self.size.height
        if viewport and (old > viewport) == (height > viewport):
            self.set_reactive(Grid.virtual_size, Size(self._row_width, height))
            if self.show_vertical_scrollbar:
                self.vertical_scrollbar.window_virtual_size = height
        else:
            self.virtual_size = Size(self._row_width, height)

    def keys(self) -> list[str]:
        return list(self._keys)

    @property
    def row_count(self) -> int:
        return len(self._keys)

    def selected_key(self) -> str | None:
        return self._keys[self.cursor] if 0 <= self.cursor < len(self._keys) else None

    def row_text(self, key: str) -> list[str]:
        """The row's cells as plain text (what a test reads)."""
        return [v.plain if isinstance(v, Text) else Text.from_markup(v).plain for v in self._values.get(key, ())]

    # -- cursor ----------------------------------------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        if not self._keys:
            return
        self.cursor_fell = False
        old = self.cursor
        self.cursor = max(0, min(row, len(self._keys) - 1))
        top = int(self.scroll_y)
        visible = max(1, self.size.height - 1)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)
        self._refresh_row(old)
        self._refresh_row(self.cursor)
        self._announce()

    def _announce(self) -> None:
        key = self.selected_key()
        if key is not None and key != self._cursor_key:
            self._cursor_key = key
            self.post_message(self.RowHighlighted(self, key))
        elif key is None:
            self._cursor_key = None

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor + step)

    def action_page(self, step: int) -> None:
        self.move_cursor(self.cursor + step * max(1, self.size.height - 2))

    def action_edge(self, end: int) -> None:
        self.move_cursor(len(self._keys) - 1 if end else 0)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(int(self.scroll_y) + event.y - 1)

    def on_focus(self) -> None:
        self.cursor_fell = False
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- painting --------------------------------------------------------------------------------------------------

    def when_drawn(self, callback: Callable[[], None]) -> None:
        """Call back once rows were drawn again, right after the screen refresh that drew them (and wrote them to
        the terminal: drawing and writing are one synchronous step, the callback runs after it)."""
        self._on_drawn.append(callback)

    def _drawn(self) -> None:
        loop = asyncio.get_running_loop()
        for callback in self._on_drawn:
            loop.call_soon(callback)
        self._on_drawn = []

    def _refresh_row(self, index: int) -> bool:
        """Redraw the row if it is in sight; whether it is."""
        y = index - int(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))
            return True
        return False

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()
        self._header = None

    def _render_cells(self, cells: Iterable[Value], style: Style | None = None) -> Strip:
        """One segment per cell (a cell has one style: a Text's, or its markup's first span's)."""
        segments: list[Segment] = []
        for (_, _, width, right), value in zip(self.COLUMNS, cells, strict=False):
            plain, cell_style = _parts(value)
            if right:
                text = fit_right(plain, width)
            else:
                text = (" " + plain)
                text = text[: width - 1] + "…" if len(text) > width else text.ljust(width)
            segments.append(Segment(text, cell_style))
        strip = Strip(segments, self._row_width)
        return strip.apply_style(style) if style else strip

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            if self._header is None:
                labels = [Text(c[1]) for c in self.COLUMNS]
                self._header = self._render_cells(labels, self.get_component_rich_style("grid--header"))
            return self._header.crop_extend(0, width, None)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._keys):
            return Strip.blank(width)
        if self._on_drawn:
            self._drawn()
        key = self._keys[index]
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = self._render_cells(self._values[key])
        if index == self.cursor:
            cursor = "grid--cursor" if self.has_focus else "grid--cursor-blurred"
            line = line.crop_extend(0, width, None).apply_style(self.get_component_rich_style(cursor))
            return line
        return line.crop_extend(0, width, None)
