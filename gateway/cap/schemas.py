"""What the CAP ingest API reads and answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CapSenderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(
        min_length=1,
        max_length=200,
        description="The CAP <sender> value, exactly as the alerts carry it",
    )
    user_id: int = Field(description="The account that posts this sender's alerts")
    enabled: bool = True
    note: str | None = Field(default=None, max_length=300)


class CapSenderPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int | None = None
    enabled: bool | None = None
    note: str | None = Field(default=None, max_length=300)


class CapSenderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sender: str
    user_id: int
    enabled: bool
    note: str | None
    created_at: datetime
    updated_at: datetime


class CapSenderList(BaseModel):
    items: list[CapSenderRead]


class CapIngested(BaseModel):
    """What a CAP alert made: a broadcast, or the approval request (two-person rule) or the
    schedule (quiet hours, a future <effective>) that holds it; for an Update or Cancel, what it
    stopped of the alerts it references: the broadcasts whose unplayed deliveries it
    cancelled, the held sends it cancelled and the approval requests it withdrew."""

    identifier: str
    sender: str
    sent: str
    msg_type: str
    mode: str
    category: str | None
    language: str | None
    broadcast_ids: list[str]
    approval_id: str | None = None
    schedule_id: str | None = None
    cancelled_broadcast_ids: list[str] = Field(default_factory=list)
    cancelled_schedule_ids: list[str] = Field(default_factory=list)
    withdrawn_approval_ids: list[str] = Field(default_factory=list)
    village_ids: list[int] = Field(default_factory=list)
