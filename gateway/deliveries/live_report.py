"""Live reception, as the speakers report it in a live command's final ack: kept per delivery
once checked, and summed up per village (latency, frames lost, mouth to horn)."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deliveries.models import Delivery
from gateway.live.models import LiveSession

if TYPE_CHECKING:
    from gateway.deliveries.acks import AckIn

log = logging.getLogger(__name__)

# Mouth to horn beyond this (ten minutes, the contract's bound on latency) is no measurement.
MAX_MOUTH_MS: Final = 600_000


def keep_live_report(delivery: Delivery, ack: AckIn, sent: int | None = None) -> None:
    """A live command's final ack says how the stream arrived: kept with the delivery, once
    checked. Frames lost beyond the `sent` ones (known once the session ended) are cut to
    them; mouth-to-horn figures that cannot be (negative, p50 above p95, beyond bounds) are
    dropped. Either is logged, and the ack counts as ever."""
    if ack.live_latency_ms is not None:
        delivery.live_latency_ms = ack.live_latency_ms
    lost = ack.live_frames_lost
    if lost is not None:
        if sent is not None and lost > sent:
            log.warning(
                "speaker %s reported %d live frames lost of %d sent in %s: kept as %d",
                ack.speaker_code or ack.speaker_id,
                lost,
                sent,
                ack.broadcast_id,
                sent,
            )
            lost = sent
        delivery.live_frames_lost = lost
    p50, p95 = ack.live_mouth_p50_ms, ack.live_mouth_p95_ms
    if p50 is None and p95 is None:
        return
    if p50 is None or p95 is None or not 0 <= p50 <= p95 <= MAX_MOUTH_MS:
        log.warning(
            "speaker %s reported mouth-to-horn p50 %s ms, p95 %s ms for %s: not kept",
            ack.speaker_code or ack.speaker_id,
            p50,
            p95,
            ack.broadcast_id,
        )
        return
    delivery.live_mouth_p50_ms, delivery.live_mouth_p95_ms = p50, p95


async def live_frames_sent(session: AsyncSession, broadcast_ids: Iterable[str]) -> dict[str, int]:
    """Frames the gateway sent, per live session that has ended (while it runs, not yet
    known: `deliveries.service.cap_live_losses` cuts the reports when it ends)."""
    wanted = sorted(set(broadcast_ids))
    if not wanted:
        return {}
    found = await session.execute(
        select(LiveSession.broadcast_id, LiveSession.frames).where(
            LiveSession.broadcast_id.in_(wanted), LiveSession.state == "ended"
        )
    )
    return dict(found.tuples().all())


@dataclass(frozen=True)
class LiveFigures:
    latency_ms: int | None  # median of the speakers that reported one
    frames_lost: int | None  # sum over the speakers that reported it
    # Mouth to horn: the worst speaker's p95 (the village hears its slowest horn too), and
    # the median of the speakers' p50.
    mouth_p95_ms: int | None = None
    mouth_p50_ms: int | None = None

    def fields(self) -> dict[str, int | None]:
        return {
            "live_latency_ms": self.latency_ms,
            "live_frames_lost": self.frames_lost,
            "live_mouth_p50_ms": self.mouth_p50_ms,
            "live_mouth_p95_ms": self.mouth_p95_ms,
        }


def live_figures(deliveries: Iterable[Delivery]) -> LiveFigures:
    """A village's live reception, from its speakers' deliveries."""
    latencies: list[int] = []
    lost: list[int] = []
    mouth_p50: list[int] = []
    mouth_p95: list[int] = []
    for delivery in deliveries:
        if delivery.live_latency_ms is not None:
            latencies.append(delivery.live_latency_ms)
        if delivery.live_frames_lost is not None:
            lost.append(delivery.live_frames_lost)
        if delivery.live_mouth_p50_ms is not None and delivery.live_mouth_p95_ms is not None:
            mouth_p50.append(delivery.live_mouth_p50_ms)
            mouth_p95.append(delivery.live_mouth_p95_ms)
    return LiveFigures(
        _median(latencies),
        sum(lost) if lost else None,
        mouth_p95_ms=max(mouth_p95) if mouth_p95 else None,
        mouth_p50_ms=_median(mouth_p50),
    )


def _median(values: list[int]) -> int | None:
    return round(statistics.median(values)) if values else None
