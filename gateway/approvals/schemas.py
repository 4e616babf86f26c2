"""Shapes of the approval API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from gateway.broadcasts.schemas import BroadcastSummary
from wire.contract import Category

ApprovalState = Literal["pending", "approved", "rejected", "withdrawn", "expired"]


class ApprovalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    state: ApprovalState
    category: Category
    mode: str
    title: str | None
    text: str | None
    target: dict[str, object]
    duration_ms: int
    audio_sha256: dict[str, str] = Field(
        description="Codec -> sha256 of the encoded audio that will play (what approving "
        "signs); typed text read in other languages in some villages adds `codec:set` entries "
        '("opus:ko+vi"), the audio those villages hear'
    )
    source_sha256: str = Field(description="sha256 of the audio as uploaded or spoken")
    requested_by: str
    created_at: datetime
    expires_at: datetime = Field(description="Not approved by then: it lapses, never sent")
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    broadcast_id: str | None

    @computed_field(  # type: ignore[prop-decorator]
        description="Where those who may see the request hear it before deciding"
    )
    @property
    def audio_url(self) -> str:
        return f"/api/v1/approvals/{self.id}/audio"


class ApprovalPage(BaseModel):
    items: list[ApprovalRead]
    total: int
    limit: int
    offset: int


class Decision(BaseModel):
    note: str | None = Field(default=None, max_length=300)


class Approval(Decision):
    audio_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="The sha256 of the audio the approver heard (from `audio_sha256` or the "
        "audio's `ETag`); if given and not what would play: 409 approval_audio_changed",
    )


class Approved(BaseModel):
    approval: ApprovalRead
    broadcast: BroadcastSummary
