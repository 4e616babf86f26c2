"""Log lines never show a live talk's ticket, however the server formats them."""

from __future__ import annotations

import logging

from gateway.logs import RedactTickets


def test_a_ticket_in_a_logged_address_is_hidden() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/api/v1/live/ws?ticket=AbC-123_xyz&x=1"),
        None,
    )
    assert RedactTickets().filter(record)
    line = record.getMessage()
    assert "AbC-123_xyz" not in line
    assert line == '127.0.0.1:5000 - "WebSocket /api/v1/live/ws?ticket=***&x=1" [accepted]'


def test_other_lines_are_left_alone() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%s up", ("api",), None)
    assert RedactTickets().filter(record)
    assert (record.msg, record.args, record.getMessage()) == ("%s up", ("api",), "api up")
