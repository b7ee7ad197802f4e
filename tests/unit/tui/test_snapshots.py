"""SVG snapshots of the TUI at fixed terminal sizes, fed fixed frames (see conftest). Update them after an
intended change with `pytest tests/unit/tui --snapshot-update` and look at the diff."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Input

from tradesim.tui.app import TradesimApp

from .conftest import feed

Compare = Callable[..., bool]


async def _fed(pilot: Pilot[None]) -> None:
    feed(pilot.app)  # type: ignore[arg-type]
    await pilot.pause()


def _steady(pilot: Pilot[None]) -> None:
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False  # a blinking cursor would differ from run to run


def test_main_screen(snap_compare: Compare, offline_app: TradesimApp) -> None:
    assert snap_compare(offline_app, terminal_size=(120, 36), run_before=_fed)


def test_main_screen_at_the_smallest_size(snap_compare: Compare, offline_app: TradesimApp) -> None:
    assert snap_compare(offline_app, terminal_size=(100, 30), run_before=_fed)


def test_order_ticket_with_an_inline_error(snap_compare: Compare, offline_app: TradesimApp) -> None:
    async def ticket(pilot: Pilot[None]) -> None:
        await _fed(pilot)
        await pilot.press("s", "0", "enter")
        _steady(pilot)
        await pilot.pause()

    assert snap_compare(offline_app, terminal_size=(120, 36), run_before=ticket)
