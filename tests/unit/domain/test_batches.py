"""Batch rules: ids, progress from the read model's counts, and what a cancel answers."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.batches import (
    STATES,
    TERMINAL,
    InvalidBatchId,
    batch_id_for,
    cancel_answer,
    check_batch_id,
    progress,
)


def test_a_retried_submission_with_idempotency_keys_is_the_same_batch() -> None:
    first = batch_id_for("s-1", "sms", ["a", "b", "c"])
    assert batch_id_for("s-1", "sms", ["c", "a", "b"]) == first
    assert batch_id_for("s-2", "sms", ["a", "b", "c"]) != first
    assert batch_id_for("s-1", "email", ["a", "b", "c"]) != first


def test_a_submission_without_keys_for_every_message_gets_a_new_batch() -> None:
    assert batch_id_for("s-1", "sms", ["a", None]) != batch_id_for("s-1", "sms", ["a", None])
    assert batch_id_for("s-1", "sms", []) != batch_id_for("s-1", "sms", [])


def test_a_batch_id_is_a_uuid_and_anything_else_is_refused_saying_so() -> None:
    value = str(uuid.uuid4())
    assert check_batch_id(value.upper()) == value
    with pytest.raises(InvalidBatchId, match="not a batch id"):
        check_batch_id("../../etc")


def test_messages_not_yet_seen_count_as_accepted() -> None:
    got = progress(10, {"queued": 3, "sent": 2, "cancelled": 1})
    assert got.counts["accepted"] == 4
    assert (got.finished, got.remaining, got.percent, got.done) == (3, 7, 30.0, False)


def test_without_a_known_total_the_messages_seen_are_the_total() -> None:
    got = progress(None, {"queued": 2, "sent": 1})
    assert (got.total, got.counts["accepted"]) == (3, 0)


counts = st.dictionaries(st.sampled_from(STATES[1:]), st.integers(0, 10_000))


@given(counts, st.integers(0, 50_000) | st.none())
def test_the_counts_always_add_up_to_the_total(stored: dict[str, int], total: int | None) -> None:
    got = progress(total, stored)
    assert sum(got.counts.values()) == got.total
    assert got.finished + got.remaining == got.total
    assert all(v >= 0 for v in got.counts.values())
    assert 0 <= got.percent <= 100
    assert got.done == (got.finished == got.total)


def test_cancel_answers_say_what_happens() -> None:
    finished = progress(2, {"sent": 1, "cancelled": 1})
    assert "finished" in cancel_answer(finished, 0)
    running = progress(5, {"sent": 1, "queued": 4})
    assert cancel_answer(running, 4).startswith("cancelling 4 waiting messages")
    assert "in flight" in cancel_answer(progress(1, {"queued": 1}), 0)
    assert set(TERMINAL) < set(STATES)
