"""The API's default body cap holds the largest allowed batch, and not much more."""

from __future__ import annotations

from services.config.handlers.submission import MAX_BATCH, MAX_SMS_BODY, SubmissionIn
from shared.config import StaggerConfig


def test_the_default_cap_is_a_little_above_a_full_batch_of_the_longest_sms() -> None:
    message = {
        "to": "+61 (0)491 570 156",
        "body": "x" * MAX_SMS_BODY,
        "category": "contact_list",
        "client_reference": "r" * 200,
        "idempotency_key": "k" * 200,
        "not_before": "2026-05-01T12:00:00.000000+00:00",
        "expires_at": "2026-05-08T12:00:00.000000+00:00",
    }
    batch = SubmissionIn.model_validate({"channel": "sms", "messages": [message] * MAX_BATCH})
    size = len(batch.model_dump_json(exclude_unset=True))
    cap = StaggerConfig().api_max_body_bytes
    assert size < cap < 2 * size
