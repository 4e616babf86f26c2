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
    language: str = Field(
        description="The language of the title and text: the one asked for (``lang``) where "
        "the broadcast has it, else Korean (ko)."
    )
    sent_at: datetime = Field(description="When the broadcast was sent.")
    played_at: datetime | None = Field(
        description="When the village's first speaker finished it; null: not played there."
    )
    played: bool = Field(
        description="Whether the village's speakers played it (residents' page: "
        "'스피커로 방송되지 않았습니다' when false)."
    )
    cancelled: bool = Field(description="Cancelled after it was sent.")
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
