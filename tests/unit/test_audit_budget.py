"""The budget of audit rows for callers without a valid credential: per source, per minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.audit.budget import AnonymousBudget

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_each_source_gets_its_share_a_minute_and_an_ipv6_host_is_its_64() -> None:
    budget = AnonymousBudget(2)
    assert [budget.admit("203.0.113.66", NOW) for _ in range(3)] == [True, True, False]
    assert budget.admit("198.51.100.7", NOW), "another source has its own share"
    # Addresses of one /64 (what one host may hold) share one budget.
    assert budget.admit("2001:db8::1", NOW)
    assert budget.admit("2001:db8::2", NOW)
    assert not budget.admit("2001:db8::ffff:1", NOW)
    assert budget.admit("2001:db8:0:1::1", NOW)
    assert budget.dropped == 2
    assert budget.admit("203.0.113.66", NOW + timedelta(minutes=1)), "a new minute"
