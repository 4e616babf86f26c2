"""Response shapes of the public notices API: no names of senders, no speaker data."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from wire.contract import Category


class PublicVillage(BaseModel):
    id: int
    name: str
    district_name: str


class PublicVillagePage(BaseModel):
    items: list[PublicVillage]
    total: int
    limit: int
    offset: int


class Notice(BaseModel):
    id: str
    category: Category
    title: str | None
    text: str | None
    played_at: datetime = Field(description="When the village's first speaker finished it.")
    duration_ms: int
    audio_url: str | None = Field(
        description="The broadcast's audio, a signed link good while the notice is listed; "
        "null once deleted at the end of its retention period."
    )
    all_clear_of: str | None = Field(
        None, description='An all clear ("해제"): the notice (alert) it ends.'
    )
    all_cleared_at: datetime | None = Field(
        None, description='This alert was cleared ("해제됨"): when its all clear was sent.'
    )


class VillageNotices(BaseModel):
    village: PublicVillage
    items: list[Notice]
