"""Households and residents: adding them, reading them masked, revealing a number for a stated
reason, withdrawal and the retention clock, and the village's counts.

Other slices reach residents through `gateway.residents.reach` (who may be told, on which
channel, and their number at the moment it is sent), never through the tables.

Who may do what: city administrators and the district officers of the village's district add,
list, withdraw and reveal; every role may read a village's counts within its own area (a
village head: their villages). The routes name the roles; ``_check_area`` the area.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import scopes
from gateway.auth import Principal
from gateway.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gateway.places.models import City
from gateway.places.service import load_village
from gateway.residents.crypto import PhoneCipher, format_phone, mask_last4, normalise_phone
from gateway.residents.models import (
    Channel,
    ConsentSource,
    Household,
    Resident,
    ResidentState,
)
from gateway.residents.schemas import (
    ChannelCounts,
    HouseholdCreate,
    HouseholdPage,
    HouseholdRead,
    HouseholdSummary,
    HouseholdUpdate,
    ResidentCreate,
    ResidentPage,
    ResidentRead,
    RevealedPhone,
)
from gateway.settings import Settings

RECEIVER_KIND: Final = "household_receiver"
_ERASED: Final = (ResidentState.WITHDRAWN.value, ResidentState.EXPIRED.value)


def resident_context(resident_id: int) -> str:
    """The associated data a resident's number is sealed with."""
    return f"resident:{resident_id}"


# --------------------------------------------------------------------------------------------
# Errors


def _household_missing(household_id: int) -> NotFound:
    return NotFound(
        "household_not_found",
        ko=f"가구 {household_id}을(를) 찾을 수 없습니다.",
        en=f"Household {household_id} does not exist.",
    )


def _resident_missing(resident_id: int) -> NotFound:
    return NotFound(
        "resident_not_found",
        ko=f"주민 {resident_id}을(를) 찾을 수 없습니다.",
        en=f"Resident {resident_id} does not exist.",
    )


def duplicate_resident() -> Conflict:
    return Conflict(
        "duplicate_resident",
        ko="이미 등록된 전화번호입니다.",
        en="A resident with this phone number is already signed up.",
    )


def _outside_area() -> Forbidden:
    return Forbidden(
        "outside_scope", ko="담당 지역 밖의 마을입니다.", en="The village is outside your area."
    )


# --------------------------------------------------------------------------------------------
# Households


async def _check_area(session: AsyncSession, principal: Principal, village_id: int) -> None:
    if not await scopes.covers(session, principal, [village_id]):
        raise _outside_area()


async def check_village(
    session: AsyncSession, city: City, principal: Principal, village_id: int
) -> None:
    await load_village(session, city.id, village_id)
    await _check_area(session, principal, village_id)


async def _load_household(session: AsyncSession, city: City, household_id: int) -> Household:
    household = await session.get(Household, household_id)
    if household is None or household.city_id != city.id:
        raise _household_missing(household_id)
    return household


async def check_receiver(
    session: AsyncSession, city: City, village_id: int, receiver_id: int | None
) -> None:
    """A household's receiver must be an indoor receiver of the same village."""
    if receiver_id is None:
        return
    from gateway.speakers.service import load_speaker

    try:
        speaker = await load_speaker(session, city.id, receiver_id)
    except NotFound:
        speaker = None
    if speaker is None or speaker.kind != RECEIVER_KIND or speaker.village_id != village_id:
        raise InvalidRequest(
            "invalid_receiver",
            ko=f"스피커 {receiver_id}은(는) 이 마을의 가정용 수신기가 아닙니다.",
            en=f"Speaker {receiver_id} is not an indoor receiver (household_receiver) of this "
            "village.",
        )


async def _household_reads(
    session: AsyncSession, households: Sequence[Household]
) -> list[HouseholdRead]:
    ids = [h.id for h in households]
    counts: dict[int, int] = {}
    if ids:
        rows = await session.execute(
            select(Resident.household_id, func.count())
            .where(Resident.household_id.in_(ids), Resident.state == ResidentState.ACTIVE.value)
            .group_by(Resident.household_id)
        )
        counts = {hid: n for hid, n in rows.tuples() if hid is not None}
    return [
        HouseholdRead(
            id=h.id,
            village_id=h.village_id,
            address=h.address,
            receiver_id=h.receiver_id,
            receiver_volume=h.receiver_volume,
            hold_non_urgent=h.hold_non_urgent,
            resident_count=counts.get(h.id, 0),
            created_at=h.created_at,
        )
        for h in households
    ]


def duplicate_household() -> Conflict:
    return Conflict(
        "duplicate_household",
        ko="이 마을에 같은 주소의 가구가 이미 있습니다.",
        en="The village already has a household at this address.",
    )


async def create_household(
    session: AsyncSession,
    city: City,
    principal: Principal,
    village_id: int,
    body: HouseholdCreate,
    *,
    now: datetime,
) -> HouseholdRead:
    await check_village(session, city, principal, village_id)
    await check_receiver(session, city, village_id, body.receiver_id)
    household = Household(
        city_id=city.id,
        village_id=village_id,
        address=body.address,
        receiver_id=body.receiver_id,
        receiver_volume=body.receiver_volume,
        hold_non_urgent=body.hold_non_urgent,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(household)
            await session.flush()
    except IntegrityError:
        raise duplicate_household() from None
    return (await _household_reads(session, [household]))[0]


async def update_household(
    session: AsyncSession,
    city: City,
    principal: Principal,
    household_id: int,
    body: HouseholdUpdate,
    *,
    now: datetime,
) -> HouseholdRead:
    household = await _load_household(session, city, household_id)
    await _check_area(session, principal, household.village_id)
    fields = body.model_fields_set
    if "receiver_id" in fields:
        await check_receiver(session, city, household.village_id, body.receiver_id)
        household.receiver_id = body.receiver_id
    if "receiver_volume" in fields:
        household.receiver_volume = body.receiver_volume
    if "hold_non_urgent" in fields and body.hold_non_urgent is not None:
        household.hold_non_urgent = body.hold_non_urgent
    household.updated_at = now
    await session.flush()
    return (await _household_reads(session, [household]))[0]


async def receiver_choice(session: AsyncSession, speaker_id: int) -> tuple[int | None, bool]:
    """The volume and quiet-hours hold the household of indoor receiver `speaker_id` chose
    (none linked: its own volume, no hold)."""
    row = (
        await session.execute(
            select(Household.receiver_volume, Household.hold_non_urgent)
            .where(Household.receiver_id == speaker_id)
            .order_by(Household.id)
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row is not None else (None, False)


async def list_households(
    session: AsyncSession,
    city: City,
    principal: Principal,
    village_id: int,
    *,
    limit: int,
    offset: int,
) -> HouseholdPage:
    await check_village(session, city, principal, village_id)
    where = (Household.city_id == city.id, Household.village_id == village_id)
    total = await session.scalar(select(func.count()).select_from(Household).where(*where))
    households = await session.scalars(
        select(Household).where(*where).order_by(Household.id).limit(limit).offset(offset)
    )
    items = await _household_reads(session, list(households))
    return HouseholdPage(items=items, total=total or 0, limit=limit, offset=offset)


# --------------------------------------------------------------------------------------------
# Residents


def resident_read(resident: Resident) -> ResidentRead:
    return ResidentRead(
        id=resident.id,
        village_id=resident.village_id,
        household_id=resident.household_id,
        state=resident.state,
        phone=mask_last4(resident.phone_last4) if resident.phone_last4 else None,
        language=resident.language,
        channels=list(resident.channels),
        consent_purpose=resident.consent_purpose,
        consent_source=resident.consent_source,
        consent_version=resident.consent_version,
        consented_at=resident.consented_at,
        consent_expires_at=resident.consent_expires_at,
    )


async def find_by_number(
    session: AsyncSession, cipher: PhoneCipher, city_id: int, number: str
) -> Resident | None:
    """The active resident with this normalised number, found by its keyed hash."""
    resident: Resident | None = await session.scalar(
        select(Resident).where(
            Resident.city_id == city_id, Resident.phone_lookup.in_(cipher.lookups(number))
        )
    )
    return resident


@dataclass(frozen=True)
class NewResident:
    village_id: int
    household_id: int | None
    number: str  # normalised
    language: str
    channels: Sequence[str]
    source: ConsentSource
    consent_version: str
    consented_at: datetime


async def insert_resident(
    session: AsyncSession,
    cipher: PhoneCipher,
    settings: Settings,
    city_id: int,
    new: NewResident,
    *,
    now: datetime,
) -> Resident:
    """Add a resident, sealing the number with the row's id; 409 duplicate_resident when the
    number is already signed up in the city (checked by hash, and by the unique index)."""
    if await find_by_number(session, cipher, city_id, new.number) is not None:
        raise duplicate_resident()
    resident = Resident(
        city_id=city_id,
        village_id=new.village_id,
        household_id=new.household_id,
        state=ResidentState.ACTIVE.value,
        language=new.language,
        channels=sorted(set(new.channels)),
        consent_source=new.source.value,
        consent_version=new.consent_version,
        consented_at=new.consented_at,
        consent_expires_at=new.consented_at + timedelta(days=settings.resident_consent_days),
        created_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(resident)
            await session.flush()  # the id is the number's associated data
            sealed = cipher.seal(new.number, context=resident_context(resident.id))
            resident.phone_key_id = sealed.key_id
            resident.phone_ciphertext = sealed.ciphertext
            resident.phone_lookup = sealed.lookup
            resident.phone_last4 = sealed.last4
            await session.flush()
    except IntegrityError:
        raise duplicate_resident() from None
    return resident


async def add_resident(
    session: AsyncSession,
    city: City,
    cipher: PhoneCipher,
    settings: Settings,
    principal: Principal,
    village_id: int,
    body: ResidentCreate,
    *,
    now: datetime,
) -> ResidentRead:
    """A resident whose consent an officer collected (on paper, by phone)."""
    await check_village(session, city, principal, village_id)
    if body.household_id is not None:
        household = await _load_household(session, city, body.household_id)
        if household.village_id != village_id:
            raise _household_missing(body.household_id)
    if body.consented_at > now:
        raise InvalidRequest(
            "invalid_consent_date",
            ko="동의 일시가 미래입니다.",
            en="consented_at lies in the future.",
        )
    number = normalise_phone(body.phone)
    resident = await insert_resident(
        session,
        cipher,
        settings,
        city.id,
        NewResident(
            village_id=village_id,
            household_id=body.household_id,
            number=number,
            language=body.language,
            channels=[c.value for c in body.channels],
            source=ConsentSource.STAFF,
            consent_version=body.consent_version,
            consented_at=body.consented_at,
        ),
        now=now,
    )
    return resident_read(resident)


async def _load_resident(
    session: AsyncSession, city: City, principal: Principal, resident_id: int
) -> Resident:
    resident = await session.get(Resident, resident_id)
    if resident is None or resident.city_id != city.id:
        raise _resident_missing(resident_id)
    await _check_area(session, principal, resident.village_id)
    return resident


async def get_resident(
    session: AsyncSession, city: City, principal: Principal, resident_id: int
) -> ResidentRead:
    return resident_read(await _load_resident(session, city, principal, resident_id))


async def list_residents(
    session: AsyncSession,
    city: City,
    principal: Principal,
    village_id: int,
    *,
    limit: int,
    offset: int,
) -> ResidentPage:
    await check_village(session, city, principal, village_id)
    where = (Resident.city_id == city.id, Resident.village_id == village_id)
    total = await session.scalar(select(func.count()).select_from(Resident).where(*where))
    residents = await session.scalars(
        select(Resident).where(*where).order_by(Resident.id).limit(limit).offset(offset)
    )
    items = [resident_read(r) for r in residents]
    return ResidentPage(items=items, total=total or 0, limit=limit, offset=offset)


async def reveal_phone(
    session: AsyncSession, city: City, cipher: PhoneCipher, principal: Principal, resident_id: int
) -> RevealedPhone:
    """The full number; the route requires a reason, which the audit log keeps."""
    resident = await _load_resident(session, city, principal, resident_id)
    if resident.phone_ciphertext is None or resident.phone_key_id is None:
        raise Conflict(
            "resident_erased",
            ko="동의 철회 또는 보유 기간 만료로 전화번호가 삭제되었습니다.",
            en="The number was erased (consent withdrawn or expired).",
        )
    number = cipher.open(
        resident.phone_key_id, resident.phone_ciphertext, context=resident_context(resident.id)
    )
    return RevealedPhone(resident_id=resident.id, phone=format_phone(number))


def erase(resident: Resident, state: ResidentState, *, now: datetime) -> None:
    """Forget everything personal; keep what counting needs (village, state, dates)."""
    resident.state = state.value
    resident.phone_key_id = None
    resident.phone_ciphertext = None
    resident.phone_lookup = None
    resident.phone_last4 = None
    resident.language = None
    resident.channels = []
    resident.household_id = None
    resident.erased_at = now


async def withdraw_resident(
    session: AsyncSession, city: City, principal: Principal, resident_id: int, *, now: datetime
) -> ResidentRead:
    """Consent withdrawn (the resident asked the office): erased at once. Twice is the same."""
    resident = await _load_resident(session, city, principal, resident_id)
    if resident.state == ResidentState.ACTIVE.value:
        erase(resident, ResidentState.WITHDRAWN, now=now)
        await session.flush()
    return resident_read(resident)


# --------------------------------------------------------------------------------------------
# Counts (village heads see these, never numbers)


async def village_summary(
    session: AsyncSession, city: City, principal: Principal, village_id: int
) -> HouseholdSummary:
    await load_village(session, city.id, village_id)
    if not await scopes.covers(session, principal, [village_id]):
        raise _outside_area()
    households = await session.scalar(
        select(func.count()).select_from(Household).where(Household.village_id == village_id)
    )
    with_receiver = await session.scalar(
        select(func.count())
        .select_from(Household)
        .where(Household.village_id == village_id, Household.receiver_id.is_not(None))
    )
    rows = await session.execute(
        select(Resident.state, Resident.channels).where(Resident.village_id == village_id)
    )
    active = erased = 0
    by_channel = dict.fromkeys([c.value for c in Channel], 0)
    for state, channels in rows.tuples():
        if state == ResidentState.ACTIVE.value:
            active += 1
            for channel in channels:
                if channel in by_channel:
                    by_channel[channel] += 1
        elif state in _ERASED:
            erased += 1
    return HouseholdSummary(
        village_id=village_id,
        households=households or 0,
        with_receiver=with_receiver or 0,
        residents=active,
        by_channel=ChannelCounts(**by_channel),
        withdrawn=erased,
    )


# --------------------------------------------------------------------------------------------
# The retention clock (run by the sweeper's hourly purge)


async def erase_expired(session: AsyncSession, *, city_id: int, now: datetime) -> int:
    """Erase residents whose consent ran out unrenewed; returns how many."""
    due = list(
        await session.scalars(
            select(Resident).where(
                Resident.city_id == city_id,
                Resident.state == ResidentState.ACTIVE.value,
                Resident.consent_expires_at <= now,
            )
        )
    )
    for resident in due:
        erase(resident, ResidentState.EXPIRED, now=now)
    await session.flush()
    return len(due)


async def reseal_numbers(
    session: AsyncSession, cipher: PhoneCipher, *, city_id: int, limit: int = 500
) -> int:
    """Seal again under the current key the numbers a previous key sealed (after a rotation)."""
    stale = list(
        await session.scalars(
            select(Resident)
            .where(
                Resident.city_id == city_id,
                Resident.phone_key_id.is_not(None),
                Resident.phone_key_id != cipher.key_id,
            )
            .limit(limit)
        )
    )
    for resident in stale:
        assert resident.phone_key_id is not None
        assert resident.phone_ciphertext is not None
        context = resident_context(resident.id)
        number = cipher.open(resident.phone_key_id, resident.phone_ciphertext, context=context)
        sealed = cipher.seal(number, context=context)
        resident.phone_key_id = sealed.key_id
        resident.phone_ciphertext = sealed.ciphertext
        resident.phone_lookup = sealed.lookup
    await session.flush()
    return len(stale)


async def renew_consent(
    session: AsyncSession,
    settings: Settings,
    resident: Resident,
    *,
    channels: Sequence[str],
    language: str,
    consent_version: str,
    now: datetime,
) -> None:
    """A resident who signed up again: their consent starts over, with their new choices."""
    resident.channels = sorted(set(channels))
    resident.language = language
    resident.consent_source = ConsentSource.SIGNUP.value
    resident.consent_version = consent_version
    resident.consented_at = now
    resident.consent_expires_at = now + timedelta(days=settings.resident_consent_days)
    await session.flush()
