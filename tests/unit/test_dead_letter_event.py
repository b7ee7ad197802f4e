"""A dead letter fits a Kafka record whatever its source record was."""

from __future__ import annotations

from tradesim.domain.events import MAX_REASON_CHARS, MAX_RECORD_CHARS, DeadLetter, decode, encode

#: Kafka's default largest record (message.max.bytes)
KAFKA_MAX_RECORD = 1_000_000


def test_a_short_record_is_kept_whole_with_the_reason() -> None:
    letter = DeadLetter.of(b"\xff{", source_topic="t", consumer="c", reason="not json")
    assert (letter.record, letter.reason) == ("\ufffd{", "not json")


def test_a_record_whose_letter_would_not_fit_kafka_is_cut_and_says_so() -> None:
    raw = b"\x00" * 900_000  # each NUL is six bytes as JSON: whole, the letter would be 5.4 MB
    letter = DeadLetter.of(raw, source_topic="t", consumer="c", reason="not json")
    assert len(encode(letter)) < KAFKA_MAX_RECORD
    assert letter.record == "\x00" * MAX_RECORD_CHARS
    assert letter.reason == f"not json (record cut to its first {MAX_RECORD_CHARS} of 900000 characters)"
    assert decode(DeadLetter, encode(letter)) == letter


def test_a_reason_that_quotes_a_huge_record_is_cut_too() -> None:
    huge = "\x01" * 900_000  # a validation error may quote the offending field whole
    letter = DeadLetter.of(b"{}", source_topic="t", consumer="c", reason=f"extra field {huge}")
    assert len(encode(letter)) < KAFKA_MAX_RECORD
    assert letter.reason == f"extra field {huge}"[:MAX_REASON_CHARS] + "… (reason cut)"
