"""One JSON object per line, with context fields, and phone numbers masked as a last line of defense."""

from __future__ import annotations

import io
import json
import logging

from poller.ops.logs import configure


def test_json_lines_with_context_and_redaction() -> None:
    stream = io.StringIO()
    configure("DEBUG", "json", stream)
    try:
        log = logging.getLogger("poller.test")
        log.info(
            "poll cycle failed",
            extra={"vendor": "byrobot", "account": "acme", "api": "getTasks", "attempt": 2},
        )
        log.warning("callee 13512345678 did not answer")  # must never happen; masked if it does
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("adapter failed")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["level"] for entry in lines] == ["info", "warning", "error"]
    first = lines[0]
    assert (first["vendor"], first["account"], first["api"], first["attempt"]) == (
        "byrobot",
        "acme",
        "getTasks",
        2,
    )
    assert first["logger"] == "poller.test" and first["ts"].endswith("+00:00")
    assert "13512345678" not in stream.getvalue() and "135****5678" in lines[1]["message"]
    assert "ValueError: boom" in lines[2]["error"]
