"""What a speaker needs to join: ``GET /api/v1/devices/{speaker}/provisioning``.

The answer (`wire.contract.Provisioning`) names the broker, the MQTT session a speaker keeps
(expiry, keep-alive), how often it must send a heartbeat, its topics and the gateway's key ring.
Two kinds of caller get it:

- the speaker itself, with HTTP Basic: its speaker id and the broker password issued to it
  (``POST /api/v1/speakers/{id}/credentials``), checked against the stored hash;
- an installer with a bearer token: a city administrator, or a district officer for a speaker
  of their districts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import signing
from gateway.auth import Allow, Principal, Role, current_principal
from gateway.deps import CityDep, SealDep, SessionDep, state_of
from gateway.devicesec import mosquitto
from gateway.devicesec.models import SpeakerCredential
from gateway.error_catalog import documented
from gateway.errors import Forbidden, Unauthorized
from gateway.places.models import City
from gateway.residents import service as residents
from gateway.schedules.quiet_hours import district_window
from gateway.settings import Settings
from gateway.speakers import service as speakers
from wire import contract

INSTALLERS = (Role.CITY_ADMIN, Role.DISTRICT_OFFICER)


@dataclass(frozen=True)
class Caller:
    """Who asks: a speaker (its id, password already checked) or an installer."""

    speaker: str | None = None
    speaker_password: str | None = None
    principal: Principal | None = None


def _bad_credentials() -> Unauthorized:
    return Unauthorized(
        "invalid_credentials",
        ko="스피커 아이디나 비밀번호가 맞지 않습니다.",
        en="Wrong speaker id or broker password.",
    )


class SpeakerOrInstaller(Allow):
    """A speaker with HTTP Basic (speaker id, broker password), or a person whose role is one of
    `INSTALLERS` with a bearer token; the role check is the same as `Allow`'s."""

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _bad_credentials() from None
            if not sep or not user:
                raise _bad_credentials()
            return Caller(speaker=user, speaker_password=password)
        credentials = (
            HTTPAuthorizationCredentials(scheme=scheme, credentials=value.strip())
            if scheme.lower() == "bearer" and value.strip()
            else None
        )
        principal = await current_principal(request, credentials)
        return Caller(principal=await super().__call__(principal))


router = APIRouter(tags=["devices"])
CallerDep = Annotated[Caller, Depends(SpeakerOrInstaller(*INSTALLERS))]


async def _authorize(session: AsyncSession, caller: Caller, placement: speakers.Placement) -> None:
    if caller.principal is not None:
        principal = caller.principal
        if principal.role is Role.CITY_ADMIN or placement.district_id in principal.district_ids:
            return
        raise Forbidden(
            "outside_scope",
            ko="담당 지역 밖의 스피커입니다.",
            en="The speaker is outside your area.",
        )
    if caller.speaker != placement.code or caller.speaker_password is None:
        raise _bad_credentials()
    row = await session.get(SpeakerCredential, placement.speaker_id)
    if row is None or not await asyncio.to_thread(
        mosquitto.verify_password, caller.speaker_password, row.password_hash
    ):
        raise _bad_credentials()


async def provision(
    session: AsyncSession,
    settings: Settings,
    city: City,
    code: str,
    caller: Caller,
    seal: signing.KeySeal,
) -> contract.Provisioning:
    if caller.speaker is not None and caller.speaker != code:
        raise _bad_credentials()  # a speaker learns nothing about another one
    placement = await speakers.placement_of(session, city, code)
    await _authorize(session, caller, placement)
    return await provisioning_of(session, settings, city, placement, seal)


async def provisioning_of(
    session: AsyncSession,
    settings: Settings,
    city: City,
    placement: speakers.Placement,
    seal: signing.KeySeal,
) -> contract.Provisioning:
    """The provisioning document of the speaker at `placement`, for a caller already checked."""
    identity = contract.SpeakerIdentity(
        city=city.code,
        district=placement.district_code,
        village=placement.village_code,
        speaker=placement.code,
    )
    return contract.provisioning_for(
        identity,
        broker_url=settings.broker_url_for_speakers,
        gateway_url=settings.public_url,
        session_expiry_s=settings.speaker_session_expiry_s,
        keepalive_s=settings.speaker_keepalive_s,
        heartbeat_s=settings.heartbeat_s,
        keyring=await signing.keyring(session, city.code, seal),
        receiver=await _receiver_settings(session, settings, city, placement),
    )


async def _receiver_settings(
    session: AsyncSession, settings: Settings, city: City, placement: speakers.Placement
) -> contract.ReceiverSettings | None:
    """An indoor receiver's household choice, with its district's quiet hours to hold by."""
    if placement.kind != "household_receiver":
        return None
    volume, hold = await residents.receiver_choice(session, placement.speaker_id)
    window = await district_window(session, settings, city.id, placement.district_id)
    quiet = (
        contract.QuietHours(
            start=f"{window.start:%H:%M}", end=f"{window.end:%H:%M}", timezone=city.timezone
        )
        if window is not None
        else None
    )
    return contract.ReceiverSettings(volume=volume, hold_quiet=hold, quiet_hours=quiet)


@router.get(
    "/devices/{speaker}/provisioning",
    operation_id="get_speaker_provisioning",
    responses=documented(
        "invalid_credentials",
        "not_authenticated",
        "role_not_allowed",
        "outside_scope",
        "speaker_not_found",
    ),
)
async def get_provisioning(
    speaker: str,
    request: Request,
    session: SessionDep,
    city: CityDep,
    caller: CallerDep,
    seal: SealDep,
) -> contract.Provisioning:
    """What the speaker needs to join: its broker, MQTT session settings (`session_expiry_s`,
    `keepalive_s`), heartbeat interval, topics, where audio and the key ring are, and the key
    ring itself; for an indoor receiver, its household's volume and quiet-hours hold with its
    district's quiet hours (`receiver`). Ask as the speaker (HTTP Basic: speaker id and its
    broker password) or as an installer (bearer token of a city administrator, or of a district
    officer of its district). No secret here: the broker password is the one the speaker
    already holds."""
    settings: Settings = state_of(request).settings
    return await provision(session, settings, city, speaker, caller, seal)
