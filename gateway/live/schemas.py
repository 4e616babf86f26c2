"""Request and response shapes of the live-broadcast API."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from gateway.live.ingest import PCM_RATES, InputFormat
from wire.contract import Category


class TicketCreate(BaseModel):
    """What to say live, to whom, and in which audio format the client will send it."""

    category: Category
    title: str | None = Field(default=None, max_length=200)
    all: bool = False
    district_ids: list[int] = Field(default_factory=list, max_length=1000)
    village_ids: list[int] = Field(default_factory=list, max_length=10_000)
    format: InputFormat = Field(
        "pcm",
        description=(
            "opus: one Opus packet per binary message (20 ms packets pass through unchanged); "
            "webm: MediaRecorder's WebM/Opus chunks; aac: AAC in ADTS frames (Safari, phone "
            "encoders), transcoded; pcm: signed 16-bit little-endian mono samples at "
            "sample_rate."
        ),
    )
    sample_rate: int = Field(16000, description=f"For pcm: one of {list(PCM_RATES)}")
    stamped: bool = Field(
        False,
        description=(
            "Every binary message starts with 8 bytes: when its last sample was captured, as "
            "a big-endian unsigned count of Unix milliseconds on the gateway's clock (the "
            "client's clock corrected by the offset its `clock` messages measured). Speakers "
            "then report mouth-to-horn latency; without it they say it is unknown."
        ),
    )
    resume: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="A session of yours whose connection was lost, to continue it",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TicketCreate:
        if self.sample_rate not in PCM_RATES:
            raise ValueError(f"sample_rate must be one of {list(PCM_RATES)}")
        if self.resume is None and not (self.all or self.district_ids or self.village_ids):
            raise ValueError("choose all, some districts or some villages")
        return self


class TicketRead(BaseModel):
    """A single-use ticket for the live WebSocket, valid for a few seconds."""

    ticket: str
    expires_in_s: int
    url: str = Field(description="The WebSocket path to connect to, ticket included")
