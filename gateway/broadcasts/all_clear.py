"""The all clear ("해제"): a follow-up broadcast that ends a live alert.

It is a new broadcast of spoken text, made through the one send use case like any typed one
(rights, key, limits, the two-person rule, quiet hours), to the villages the alert reached, in
its category; ``all_clear_of`` links it to the alert (kept through an approval or a deferral).
The alert then shows when it was cleared and by which broadcast; its CAP document stays the
Alert, the all clear's is an Update with `responseType` AllClear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import get_broadcast, reached_villages
from gateway.broadcasts.service import BroadcastRequest
from gateway.deps import Runtime
from gateway.errors import Conflict
from gateway.places.models import City
from gateway.sending import now
from wire.contract import Category

LABELS: Final = {
    Category.DISASTER: "재난",
    Category.CRIME_PREVENTION: "범죄 예방",
    Category.ADMINISTRATIVE: "행정 안내",
    Category.VILLAGE_NOTICE: "마을 소식",
}


def default_text(original: Broadcast) -> str:
    """ "○○ 경보를 해제합니다.", ○○ the alert's title (without a trailing 경보) or category."""
    subject = (original.title or "").strip().removesuffix("경보").strip()
    if not subject:
        subject = LABELS[Category(original.category)]
    return f"{subject} 경보를 해제합니다."


def title_of(original: Broadcast) -> str:
    subject = (original.title or "").strip() or f"{LABELS[Category(original.category)]} 경보"
    return f"[해제] {subject}"[:200]


def _not_clearable() -> Conflict:
    return Conflict(
        "not_clearable",
        ko="실제(live) 방송으로 나가고 취소되지 않은 경보만 해제할 수 있습니다. 해제 방송은 "
        "다시 해제할 수 없습니다.",
        en="Only a live broadcast that was not cancelled, and is not itself an all clear, can "
        "be cleared.",
    )


def clearable(original: Broadcast) -> bool:
    return original.mode == "live" and original.cancelled_at is None and not original.all_clear_of


def request_for(
    original: Broadcast,
    *,
    text: str | None,
    title: str | None = None,
    expires_in_s: int | None,
    idempotency_key: str | None,
    principal: Principal,
    extra_target: Mapping[str, object] | None = None,
    texts: Mapping[str, str] | None = None,
) -> BroadcastRequest:
    """The all clear of ``original``: its category, to the villages it reached, linked."""
    spoken = (text or "").strip() or default_text(original)
    extra: dict[str, object] = {**(extra_target or {}), "all_clear_of": original.id}
    if "area" in original.target:
        extra["area"] = original.target["area"]
    whole_city = bool(original.target.get("all"))
    return BroadcastRequest(
        category=Category(original.category),
        title=(title or title_of(original))[:200],
        text=spoken,
        all_villages=whole_city,
        district_ids=(),
        village_ids=() if whole_city else tuple(reached_villages(original)),
        expires_in_s=expires_in_s,
        idempotency_key=idempotency_key,
        created_by=principal.actor,
        mode="live",
        principal=principal,
        extra_target=extra,
        texts=texts or {},
    )


async def send_all_clear(
    session: AsyncSession,
    runtime: Runtime,
    city: City,
    broadcast_id: str,
    *,
    text: str | None,
    expires_in_s: int | None,
    idempotency_key: str | None,
    principal: Principal,
) -> now.Answer:
    original = await get_broadcast(session, city.id, broadcast_id)
    if not clearable(original):
        raise _not_clearable()
    request = request_for(
        original,
        text=text,
        expires_in_s=expires_in_s,
        idempotency_key=idempotency_key,
        principal=principal,
    )
    # Cleared already (an earlier all clear, or one sent at this very moment by another officer
    # or replica): the send use case refuses it, 409 already_all_clear (`sending.service`).
    return await now.send_now(session, runtime, city, request, None)
