"""Who may stop or change what another person sent: the facts ``rules.judge_cancel`` needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Principal
from gateway.errors import Forbidden
from gateway.sending.rules import OWN_STOPS, CancelPath, area_of, judge_cancel
from gateway.settings import Settings
from gateway.users import standing


async def authorize_cancel(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    path: CancelPath,
    *,
    sender: str,
    rights: Callable[[], Awaitable[None]],
) -> None:
    """Refuse ``principal`` unless ``rules.CANCEL`` lets them act on what ``sender`` (an actor
    name) sent; ``rights`` raises what sending it as it stands would answer them."""
    own = principal.user_id is not None and principal.actor == sender
    refusal: Forbidden | None = None
    if not own or path not in OWN_STOPS:
        try:
            await rights()
        except Forbidden as exc:
            refusal = exc
    # The sender's area as it is now: their account is the one record of it.
    sender_area = area_of(
        principal if own else await standing.current_principal(session, settings, sender)
    )
    refused = judge_cancel(
        path, own=own, rights=refusal, area=area_of(principal), sender_area=sender_area
    )
    if refused is not None:
        raise refused
