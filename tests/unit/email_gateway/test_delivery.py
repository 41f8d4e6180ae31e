"""SMTP attempt → the message's next state (pure rules of the email gateway)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.email_gateway.domain.delivery import after_attempt, after_looking


def test_a_clear_answer_is_the_next_state() -> None:
    assert after_attempt("sent") == "sent"
    assert after_attempt("retry") == "retry"
    assert after_attempt("failed") == "failed"


def test_no_final_reply_means_looking_in_the_sent_folder_before_resending() -> None:
    assert after_attempt("ambiguous") == "look_in_sent_folder"


@given(st.sampled_from([True, False, None]))
def test_only_a_copy_found_in_the_sent_folder_counts_as_sent(found: bool | None) -> None:
    assert after_looking(found) == ("sent" if found is True else "retry")
