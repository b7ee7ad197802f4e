"""The execution job's keyed state, pickled by the release before issue 13 (commit f0a5531), still restores: a
savepoint taken before an upgrade must not put the job in a restart loop."""

from __future__ import annotations

import base64
import pickle
from decimal import Decimal

from tradesim.domain.book import Book, Decision
from tradesim.domain.portfolio import Written

#: pickle.dumps({"book": Book(...), "queued": Decision(...), "mirror": (order, outcome, ViewPatch(...))}) at f0a5531
OLD_STATE = base64.b64decode("""
gASVXgQAAAAAAAB9lCiMBGJvb2uUjB10cmFkZXNpbS5qb2JzLmV4ZWN1dGlvbl9sb2dpY5SMBEJvb2uUk5QpgZR9lCiMBXF1b3Rl
lIwYdHJhZGVzaW0uZG9tYWluLm1hdGNoaW5nlIwFUXVvdGWUk5QpgZR9lCiMA2JpZJSMB2RlY2ltYWyUjAdEZWNpbWFslJOUjAMx
MDCUhZRSlIwDYXNrlGgQjAYxMDAuMDKUhZRSlIwEbGFzdJRoEIwGMTAwLjAxlIWUUpSMDWV2ZW50X3RpbWVfbXOUSwV1YowHcmVz
dGluZ5R9lIwCbzGUjBZ0cmFkZXNpbS5kb21haW4uZXZlbnRzlIwLT3JkZXJQbGFjZWSUk5QpgZR9lCiMCF9fZGljdF9flH2UKIwO
c2NoZW1hX3ZlcnNpb26USwGMBHR5cGWUjAxvcmRlcl9wbGFjZWSUjAhvcmRlcl9pZJRoH4wHdXNlcl9pZJSMAnUxlIwGc3ltYm9s
lIwEQUNNRZSMBHNpZGWUjANidXmUjANxdHmUSwWMCm9yZGVyX3R5cGWUjAVsaW1pdJSMC2xpbWl0X3ByaWNllGgQjAQ5OS41lIWU
UpSMCnN0b3BfcHJpY2WUTowNdGltZV9pbl9mb3JjZZSMA2d0Y5SMD2NsaWVudF9vcmRlcl9pZJROjAxwbGFjZWRfYXRfbXOUTegD
dYwSX19weWRhbnRpY19leHRyYV9flE6MF19fcHlkYW50aWNfZmllbGRzX3NldF9flI+UKGgxaC9oPGgqaC1oMmg5aDRoK5CMFF9f
cHlkYW50aWNfcHJpdmF0ZV9flE51YomGlHOMCWxhc3RfdGlja5RLAUsHhpR1YowGcXVldWVklGgCjAhEZWNpc2lvbpSTlCmBlH2U
KIwFb3JkZXKUaCOMBGtpbmSUjARmaWxslIwFcHJpY2WUaBCMBDk5LjWUhZRSlIwGcmVhc29ulE51YowGbWlycm9ylGgjaCCMDE9y
ZGVyT3V0Y29tZZSTlCmBlH2UKGglfZQoaCdLAWgojA1vcmRlcl9vdXRjb21llGgqjAJvMpRoK2gsaC1oLmgvaDBoMUsBjAZzdGF0
dXOUjAhleGVjdXRlZJRoUE6MCmZpbGxfcHJpY2WUaBCMBjEwMC4wMpSFlFKUjANmZWWUaBCMBDEuMDCUhZRSlIwKY2FzaF9hZnRl
cpROjA5wb3NpdGlvbl9hZnRlcpROjAh0cmFkZV9pZJSMBG8yLTGUjA1kZWNpZGVkX2F0X21zlEsJdWg9Tmg+j5QoaDFoL2hnaCpo
LWhbaF9oWWhlaCuQaEBOdWKMJnRyYWRlc2ltLmFkYXB0ZXJzLnJlZGlzLnBvcnRmb2xpb192aWV3lIwJVmlld1BhdGNolJOUKYGU
fZQoaCtoLIwHdmVyc2lvbpRLA4wEY2FzaJRoEIwGODk5Ljk4lIWUUpSMCm5fb3V0Y29tZXOUSwJoLWgujAhxdWFudGl0eZRLAXVi
h5R1Lg==""")


def test_book_decision_and_mirror_state_of_the_previous_release_restore() -> None:
    state = pickle.loads(OLD_STATE)  # noqa: S301 - our own checkpoint format, from a fixed test vector
    book, queued, (order, outcome, written) = state["book"], state["queued"], state["mirror"]
    assert isinstance(book, Book)
    assert (book.quote.ask, book.last_tick, list(book.resting)) == (Decimal("100.02"), (1, 7), ["o1"])
    assert book.scheduled == ()  # added later: an old book holds no scripted orders
    assert isinstance(queued, Decision)
    assert (queued.kind, queued.price, queued.order.order_id) == ("fill", Decimal("99.5"), "o1")
    assert (order.order_id, outcome.order_id, outcome.fill_price) == ("o1", "o2", Decimal("100.02"))
    assert isinstance(written, Written)
    assert written == Written("u1", Decimal("899.98"), "ACME", 1, 3, 2)


def test_fields_added_since_read_as_their_defaults() -> None:
    """Reading a field the old pickle lacks (the job reads `cancel_at_ms` and `traceparent` of a resting order on
    every tick) must give the default, not raise AttributeError in a restart loop."""
    state = pickle.loads(OLD_STATE)  # noqa: S301 - as above
    order = state["queued"].order
    assert (order.at_ms, order.cancel_at_ms, order.session_ms, order.traceparent) == (None, None, None, None)
    assert (order.held_cancel_ms, order.cancel_due_ms) == (None, None)
    assert order.time_in_force == "gtc"  # present in the old pickle: kept
    _, outcome, _ = state["mirror"]
    assert (outcome.order_type, outcome.placed_at_ms, outcome.traceparent) == (None, None, None)
