"""What is said about a remote answer: status and fixed reason, never the remote words."""

from __future__ import annotations

from shared.net.remote import code_token, enhanced_status, excerpt, http_detail, smtp_status


def test_http_detail_keeps_status_and_short_codes_only() -> None:
    assert (
        http_detail("Twilio", 400, 21211)
        == "Twilio answered HTTP 400 (the request was refused; code 21211)"
    )
    text = http_detail("the simulator", 502, "<html>internal-db-7.corp: stack trace</html>")
    assert text == "the simulator answered HTTP 502 (the provider had an error)"
    assert code_token("invalid_number") == "invalid_number"
    assert code_token(True) is None and code_token("two words") is None


def test_smtp_status_keeps_reply_and_enhanced_codes() -> None:
    assert (
        smtp_status(550, "5.7.30 Basic authentication is not supported; see https://x")
        == "550 5.7.30"
    )
    assert smtp_status(421, "mx.internal.corp Service not available") == "421"
    assert enhanced_status("4.4.2 timeout") == "4.4.2" and enhanced_status("hello") is None


def test_excerpt_is_cut_and_printable() -> None:
    cleaned = excerpt("a\r\nb\x00c" + "x" * 500)
    assert "\r" not in cleaned and "\x00" not in cleaned and len(cleaned) <= 201
