"""The SMS bench's count of what reached the fake SMSC: one per part, read as the log grows."""

from __future__ import annotations

from pathlib import Path

from bench.sms import SmscCounter

PART = "2026-12-06 08:00:00 [1] [0] INFO: Got message {n}: <1588 0102000000{n} ucs-2 %C7%D1>\n"


def test_parts_are_counted_once_each_as_the_log_grows(tmp_path: Path) -> None:
    log = tmp_path / "fakesmsc.log"
    counter = SmscCounter(log)
    assert counter.read() == 0  # no log yet

    log.write_text("fakesmsc starting\n" + PART.format(n=1) + PART.format(n=2)[:30])
    assert counter.read() == 1  # the second line is not whole yet
    with log.open("a") as out:
        out.write(PART.format(n=2)[30:] + PART.format(n=3))
    assert counter.read() == 3
    assert counter.read() == 3
