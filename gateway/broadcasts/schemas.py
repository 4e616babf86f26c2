"""Request and response shapes of the broadcast API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gateway.fallback.schemas import PhoneCounts, PushCounts, VillageFallback
from wire.contract import Category

BroadcastState = Literal["queued", "in_progress", "completed", "cancelled"]
# "live" is a real broadcast; "test" and "exercise" are kept apart from real ones end to end:
# announced as such on the speakers (or only logged there, GATEWAY_TEST_PLAYBACK), never
# pre-empting a real broadcast, filtered apart in lists and reports, never on residents' pages.
BroadcastMode = Literal["live", "test", "exercise"]
VillageOutcome = Literal["played", "partial", "missed", "in_progress", "offline", "no_speakers"]


class SpeakerCounts(BaseModel):
    total: int = 0
    queued: int = 0
    sent: int = 0
    received: int = 0
    playing: int = 0
    preempted: int = Field(
        0,
        description=(
            "Interrupted by a higher-priority broadcast; still open, it plays again from the "
            "start when its turn comes (unless the broadcast expires first)."
        ),
    )
    played: int = 0
    played_late: int = Field(
        0,
        description=(
            "Played after the delivery had ended (failed, expired or cancelled, e.g. the "
            "gateway gave up with no_ack): the village heard it, later than the record said."
        ),
    )
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    offline: int = Field(
        0, description="Deliveries still open whose speaker is offline (not counted elsewhere)."
    )
    held: int = Field(
        0,
        description=(
            "Indoor receivers holding it because their household holds notices in quiet hours "
            "(reason held_quiet_hours): waiting to play when they end, or expired meanwhile; "
            "neither missed nor failed (not counted elsewhere)."
        ),
    )


class VillageCounts(BaseModel):
    total: int = 0
    played: int = Field(
        0, description="Every speaker of the village played (some perhaps played_late)."
    )
    partial: int = Field(0, description="Some speakers played; the rest can no longer change.")
    missed: int = Field(0, description="No speaker played; none can change any more.")
    in_progress: int = 0
    offline: int = Field(0, description="Open deliveries remain, all to offline speakers.")
    no_speakers: int = 0


class PlayProof(BaseModel):
    """What the speaker proved it played (a ``played`` delivery that passed the checks)."""

    audio_sha256: str = Field(description="The encoding it played.")
    played_ms: int
    level_dbfs: float | None = Field(
        description="RMS level of the PCM it wrote to its output, in dBFS (full scale 0)."
    )
    at: datetime | None = Field(description="When the speaker signed it, by its own clock.")
    verified: bool | None = Field(
        description="true: its receipt signature verified against the speaker's enrolled "
        "receipt key; null: the speaker has no receipt key enrolled."
    )


class SpeakerDelivery(BaseModel):
    speaker_id: int
    code: str
    state: str
    online: bool
    reason: str | None
    attempts: int = Field(
        description="Asks in a row the speaker has left unanswered; any answer starts it again."
    )
    sends: int = Field(
        description="How many times the gateway sent the command to this speaker (the first "
        "send and every retry or catch-up); never reset."
    )
    updated_at: datetime
    played_at: datetime | None
    proof: PlayProof | None = None
    live_latency_ms: int | None = Field(
        None, description="Live broadcasts: median latency of the stream's frames on it."
    )
    live_frames_lost: int | None = Field(
        None, description="Live broadcasts: frames of the stream that did not play on it."
    )
    live_mouth_p50_ms: int | None = Field(
        None,
        description="Live broadcasts: median time from the talker's microphone to this "
        "speaker's output (unknown when the talking client did not stamp its audio).",
    )
    live_mouth_p95_ms: int | None = Field(
        None, description="Live broadcasts: as `live_mouth_p50_ms`, the 95th percentile."
    )
    resent_in: str | None = Field(
        None, description="This delivery missed; the resend (a broadcast id) sent in its place."
    )
    resend_of: str | None = Field(
        None, description="This broadcast is a resend: the broadcast whose delivery it repeats."
    )


class VillageDelivery(BaseModel):
    village_id: int
    code: str
    name: str
    outcome: VillageOutcome
    speakers: list[SpeakerDelivery]
    live_latency_ms: int | None = Field(
        None, description="Live broadcasts: the median of its speakers' live latency."
    )
    live_frames_lost: int | None = Field(
        None, description="Live broadcasts: frames lost, summed over its speakers."
    )
    live_mouth_p50_ms: int | None = Field(
        None,
        description="Live broadcasts: mouth to horn, the median of its speakers' p50.",
    )
    live_mouth_p95_ms: int | None = Field(
        None,
        description="Live broadcasts: mouth to horn, its worst speaker's p95 (the talker's "
        "microphone to that speaker's output).",
    )
    speakers_played: int = Field(0, description="Its speakers that played (played or played_late).")
    households_confirmed: int = Field(
        0,
        description="Households whose indoor receiver confirmed the notice with its 들었어요 "
        "button: distinct households whose receiver sent a verified heard acknowledgement.",
    )
    phone: PhoneCounts = Field(
        default_factory=PhoneCounts,
        description="Its residents told by phone (the fallback), by their message's state.",
    )
    push: PushCounts = Field(
        default_factory=PushCounts,
        description="Browsers subscribed to its residents' page told by web push (the fallback).",
    )
    fallback: VillageFallback | None = Field(
        None, description="The fallback to phones: null until the gateway has planned it."
    )


class BroadcastSummary(BaseModel):
    id: str
    state: BroadcastState
    category: Category
    mode: BroadcastMode = "live"
    priority: int
    title: str | None
    text: str | None
    texts: dict[str, str] = Field(
        default_factory=dict,
        description="The text in other languages, by BCP 47 primary tag (Korean is `text`).",
    )
    created_at: datetime
    expires_at: datetime
    cancelled_at: datetime | None
    finished_at: datetime | None
    duration_ms: int
    target: dict[str, object]
    villages: VillageCounts
    speakers: SpeakerCounts
    phone: PhoneCounts = Field(
        default_factory=PhoneCounts,
        description="Residents told by phone (the fallback), over every village.",
    )
    push: PushCounts = Field(
        default_factory=PushCounts,
        description="Browsers told by web push (the fallback), over every village.",
    )
    evidence_hold: bool = False
    audio_purged_at: datetime | None = Field(
        None, description="The recording was deleted at the end of its retention period"
    )
    all_clear_of: str | None = Field(
        None, description='This broadcast is an all clear ("해제"): the alert it ends.'
    )
    all_cleared_at: datetime | None = Field(
        None, description='The alert was cleared ("해제됨"): when its all clear was sent.'
    )
    all_cleared_in: str | None = Field(None, description="The all clear that ended this alert.")


class BroadcastDetail(BroadcastSummary):
    village_deliveries: list[VillageDelivery]


class BroadcastPage(BaseModel):
    items: list[BroadcastSummary]
    total: int
    limit: int
    offset: int


MissedState = Literal["failed", "expired"]
_MISSED: tuple[MissedState, ...] = ("failed", "expired")


class ResendRequest(BaseModel):
    """Which missed deliveries of a broadcast to send again; by default every failed or expired
    one. Narrow it to some villages or speakers of the broadcast."""

    states: list[MissedState] = Field(
        default_factory=lambda: list(_MISSED), min_length=1, max_length=2
    )
    village_ids: list[int] = Field(default_factory=list, max_length=10_000)
    speaker_ids: list[int] = Field(default_factory=list, max_length=100_000)
    expires_in_s: int | None = Field(default=None, ge=30, le=7 * 86400)


class EvidenceHold(BaseModel):
    """Keep (or stop keeping) a broadcast's recording past its retention period."""

    hold: bool = True
    reason: str | None = Field(default=None, min_length=1, max_length=300)


class AllClearRequest(BaseModel):
    """An all clear of a live alert; without `text` it says "○○ 경보를 해제합니다."."""

    text: str | None = Field(default=None, min_length=1, max_length=5000)
    expires_in_s: int | None = Field(default=None, ge=30, le=7 * 86400)
