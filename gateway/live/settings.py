"""Live-broadcast configuration from environment variables (prefix GATEWAY_LIVE_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LiveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_LIVE_", env_file=None, extra="ignore")

    # The speakers' jitter buffer: more absorbs a rougher network, less is heard sooner.
    jitter_ms: int = Field(default=80, ge=20, le=1000)
    # A speaker ends the stream by itself after this long without a frame (paused: idle_s).
    stall_ms: int = Field(default=3000, ge=200, le=60_000)
    idle_s: int = Field(default=120, ge=1, le=3600)
    # How long a vanished talking client may take to come back before the session ends.
    grace_s: float = Field(default=5.0, ge=0.5, le=120)
    # The longest live talk; it ends ``stopped`` then.
    max_s: int = Field(default=1800, ge=10, le=4 * 3600)
    ticket_ttl_s: int = Field(default=30, ge=5, le=300)
    # A second live session to a village at the same priority: refused, or waits its turn.
    conflict: Literal["refuse", "queue"] = "refuse"
    queue_wait_s: float = Field(default=120.0, ge=1, le=3600)
    # Frames ahead of real time a client may send (a burst after a network hiccup).
    burst_ms: int = Field(default=600, ge=100, le=10_000)
    # Frames dropped for running ahead of real time before the client is disconnected.
    flood_limit: int = Field(default=150, ge=10, le=100_000)
    # Binary messages that are not audio before the client is disconnected.
    invalid_limit: int = Field(default=50, ge=1, le=100_000)
    opus_bitrate: int = Field(default=24_000, ge=6000, le=128_000)
