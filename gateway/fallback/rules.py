"""Each city's fallback rule per category: after how long a village whose speakers have not all
played gets the notice on residents' phones, on which channels, whether a category goes to every
channel at once, and whether test and exercise broadcasts may reach real phones (never, unless
the city says so).

A category the city has not set follows the defaults: ``fallback_disaster_after_s`` (2 minutes)
for disasters, ``fallback_after_s`` (10 minutes) for the others, SMS, not at once, no drills.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import InvalidRequest
from gateway.fallback.channels import SENDERS
from gateway.fallback.models import FallbackRule
from gateway.settings import Settings
from wire.contract import Category


class RuleBody(BaseModel):
    """A category's rule."""

    enabled: bool = Field(True, description="false: this category never falls back to phones.")
    after_s: int = Field(
        ge=0,
        le=86_400,
        description="Seconds after the broadcast's start a village's speakers have to all "
        "play before its residents are told by phone (a village with no speaker online at the "
        "start is told at once).",
    )
    channels: list[str] = Field(
        default_factory=lambda: ["sms"],
        min_length=1,
        max_length=4,
        description="Channels residents are told on (their consent per channel applies).",
    )
    all_at_once: bool = Field(
        False,
        description="Every village's residents are told at the start, on every channel of the "
        "rule, whatever the speakers do (e.g. disasters).",
    )
    drills: bool = Field(
        False, description="Test and exercise broadcasts fall back too (real phones!)."
    )


class RuleRead(RuleBody):
    category: Category
    default: bool = Field(description="true: the city has not set it; the defaults apply.")
    updated_at: datetime | None = None
    updated_by: str | None = None


class UnavailableChannel(InvalidRequest):
    code = "fallback_channel_unavailable"

    def __init__(self, channel: str) -> None:
        known = ", ".join(sorted(SENDERS))
        super().__init__(
            ko=f"이 게이트웨이에서 쓸 수 없는 대체 수단입니다: {channel} (가능: {known})",
            en=f"Channel {channel!r} cannot be used for fallback here (available: {known}).",
        )


def default_rule(settings: Settings, category: Category) -> RuleRead:
    after = (
        settings.fallback_disaster_after_s
        if category is Category.DISASTER
        else settings.fallback_after_s
    )
    return RuleRead(category=category, default=True, after_s=after, channels=["sms"])


def _read(row: FallbackRule) -> RuleRead:
    return RuleRead(
        category=Category(row.category),
        default=False,
        enabled=row.enabled,
        after_s=row.after_s,
        channels=list(row.channels),
        all_at_once=row.all_at_once,
        drills=row.drills,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


async def rules_of(
    session: AsyncSession, settings: Settings, city_id: int
) -> dict[Category, RuleRead]:
    rows = await session.scalars(select(FallbackRule).where(FallbackRule.city_id == city_id))
    found = {Category(row.category): _read(row) for row in rows}
    return {c: found.get(c) or default_rule(settings, c) for c in Category}


async def set_rule(
    session: AsyncSession,
    city_id: int,
    category: Category,
    body: RuleBody,
    *,
    actor: str,
    now: datetime,
) -> RuleRead:
    channels = _channels(body.channels)
    row = await session.get(FallbackRule, (city_id, category.value))
    if row is None:
        row = FallbackRule(city_id=city_id, category=category.value)
        session.add(row)
    row.enabled = body.enabled
    row.after_s = body.after_s
    row.channels = channels
    row.all_at_once = body.all_at_once
    row.drills = body.drills
    row.updated_at = now
    row.updated_by = actor
    await session.flush()
    return _read(row)


async def reset_rule(session: AsyncSession, city_id: int, category: Category) -> None:
    row = await session.get(FallbackRule, (city_id, category.value))
    if row is not None:
        await session.delete(row)
        await session.flush()


def _channels(channels: Sequence[str]) -> list[str]:
    for channel in channels:
        if channel not in SENDERS:
            raise UnavailableChannel(channel)
    return list(dict.fromkeys(channels))
