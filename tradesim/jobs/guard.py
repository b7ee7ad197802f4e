"""Dead letters of the jobs: a record that cannot be parsed, or that makes a stage raise, goes to `dead_letter`
with the reason, and the job goes on.

Why a stage catches everything: a Flink job that fails on a record restarts from its last checkpoint and meets
the same record again, a restart loop that stops every symbol and user. Expected failures never reach this
(DynamoDB unavailable is retried in place, holding the record); what does is a record the code cannot handle.
Plain Python without Flink, so it is unit-tested as it is.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar

from tradesim.domain.events import DeadLetter, Event, encode

T = TypeVar("T")
R = TypeVar("R")

#: the tag name of the stages' dead-letter side output
SIDE_OUTPUT = "dead_letter"


def dead_letter(raw: bytes | str, reason: str, source_topic: str, consumer: str) -> str:
    """The JSON record sent to `dead_letter`."""
    return encode(DeadLetter.of(raw, source_topic=source_topic, consumer=consumer, reason=reason)).decode()


def failed(event: Event, exc: BaseException, *, stage: str, source_topic: str, consumer: str) -> str:
    """The dead letter of an event a stage raised on: the error, where it was raised, and the event."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
    reason = f"{stage} failed: {type(exc).__name__}: {exc}{at}"
    return dead_letter(encode(event), reason, source_topic, consumer)


def isolate(items: Sequence[T], call: Callable[[Sequence[T]], list[R]]
            ) -> tuple[list[R], list[tuple[T, Exception]]]:
    """`call(items)`; when that raises, `call` on each item alone, so one bad item does not sink its batch.

    Returns the results and the items that failed on their own, with their error."""
    try:
        return call(items), []
    except Exception as exc:  # noqa: BLE001 - whatever the item does wrong, the others go on
        if len(items) == 1:
            return [], [(items[0], exc)]
    results: list[R] = []
    bad: list[tuple[T, Exception]] = []
    for item in items:
        try:
            results += call([item])
        except Exception as exc:  # noqa: BLE001 - as above
            bad.append((item, exc))
    return results, bad
