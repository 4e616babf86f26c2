"""What the second person signs: the recording that will play, which they can fetch and hear
before approving, and whose hash their approval may carry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals import service
from gateway.auth import Principal
from gateway.broadcasts import audio_store
from gateway.broadcasts.models import AudioAsset
from gateway.errors import Conflict, NotFound
from gateway.places.models import City
from wire.contract import Codec

# The order a codec is offered in when the caller names none.
_PREFERRED = (Codec.OPUS, Codec.MP3)


async def approval_audio(
    session: AsyncSession,
    city: City,
    approval_id: str,
    viewer: Principal,
    codec: Codec | None,
    *,
    now: datetime,
) -> AudioAsset:
    """The stored encoding of the request's audio, to those who may see the request."""
    approval = await service.get_approval(session, city, approval_id, viewer=viewer, now=now)
    encodings = approval.audio_sha256
    wanted = [codec] if codec is not None else [c for c in _PREFERRED if c.value in encodings]
    sha256 = next((encodings[c.value] for c in wanted if c.value in encodings), None)
    if sha256 is None:
        raise NotFound(
            "audio_not_found",
            ko="이 승인 요청에는 그 형식의 오디오가 없습니다.",
            en=f"The request has no audio encoded as {codec or 'opus or mp3'}.",
        )
    return await audio_store.get_audio(session, sha256)


async def check_heard(
    session: AsyncSession,
    city: City,
    approval_id: str,
    viewer: Principal,
    heard_sha256: str | None,
    *,
    now: datetime,
) -> None:
    """An approval that names the recording its approver heard is refused if that is not the
    recording that would play."""
    if heard_sha256 is None:
        return
    approval = await service.get_approval(session, city, approval_id, viewer=viewer, now=now)
    if heard_sha256.lower() not in set(approval.audio_sha256.values()):
        raise Conflict(
            "approval_audio_changed",
            ko="승인하려는 방송의 음성이 들어 본 음성과 다릅니다. 다시 들어 보고 승인해 주세요.",
            en="The audio you heard is not the audio this request would play: listen again "
            "before approving.",
        )
