"""Response shapes of the audit log API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor: str
    role: str | None
    action: str
    target: str | None
    outcome: str
    reason: str | None
    source: str | None
    details: dict[str, object]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventRead]
    total: int
    limit: int
    offset: int


class AuditVerification(BaseModel):
    rows: int
    ok: bool
    first_bad_seq: int | None
    problem: str | None
    checkpoints: int = Field(
        description="Signed checkpoints of this replica the chain was checked against"
    )


class CheckpointKey(BaseModel):
    algorithm: str = Field(description="Always `ed25519`")
    public_key: str = Field(description="The raw 32-byte public key, base64")
