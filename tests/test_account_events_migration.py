"""Accounts older than their recorded history: the upgrade writes what it can know of it."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from gateway.db import create_engine
from gateway.migrations import upgrade

# Columns as they were before account events were recorded; timestamps as literals, which
# both databases read the same way.
_BEFORE = [
    "INSERT INTO cities (id, code, name, timezone, settings, created_at) "
    "VALUES (1, 'c', 'c', 'Asia/Seoul', '{}', '2026-01-01 00:00:00')",
    *(
        "INSERT INTO users (id, city_id, username, display_name, role, district_ids, village_ids, "
        "failed_logins, token_version, created_at, updated_at) "
        f"VALUES ({uid}, 1, '{name}', '{name}', '{role}', '[]', '[]', 0, 1, "
        "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        for uid, name, role in ((1, "admin", "city_admin"), (2, "safety", "safety_officer"))
    ),
    *(
        "INSERT INTO audit_events (seq, at, city_id, actor, action, target, outcome, details, "
        f"prev_hash, hash) VALUES ({seq}, '2026-01-02 00:00:00', 1, '{actor}', '{action}', "
        f"'user_id=2', '{outcome}', '{{}}', '', '{seq:064d}')"
        for seq, actor, action, outcome in (
            (1, "admin#1", "set_password", "ok"),
            (2, "admin#1", "update_user", "denied"),
            (3, "bootstrap", "reinstate_user", "ok"),
            (4, "admin#1", "get_user", "ok"),
        )
    ),
]


async def _insert(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in _BEFORE:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _events(url: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT user_id, kind, by_user_id, by_actor FROM account_events "
                    "ORDER BY user_id, at, id"
                )
            )
            return [tuple(r) for r in rows]
    finally:
        await engine.dispose()


def test_existing_accounts_get_an_unknown_creator_and_what_the_audit_log_says(
    database_url: str,
) -> None:
    upgrade(database_url, "0011")
    asyncio.run(_insert(database_url))
    upgrade(database_url)
    assert asyncio.run(_events(database_url)) == [
        (1, "created", None, "unknown"),
        (2, "created", None, "unknown"),
        (2, "password_set", 1, "admin#1"),
        (2, "reinstated", None, "bootstrap"),
    ]
