"""Request shapes of the web pages' own API: the spoken preview of typed text."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SpeechPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1, max_length=5000, examples=["오늘 오후 3시 마을회관에서 모입니다."]
    )
    repeat: bool = Field(default=False, description="Read it twice, as the broadcast would")
