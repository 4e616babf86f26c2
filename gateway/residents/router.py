"""HTTP routes for households and residents, their CSV import, the village's counts, and the
residents' own sign-up (public, no login)."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from gateway.auth import Anyone, Principal, Role, allow
from gateway.deps import CityDep, NowDep, SessionDep, SettingsDep, state_of
from gateway.error_catalog import documented
from gateway.forwarding import client_address
from gateway.places.csv_import import read_upload
from gateway.residents import csv_import, service, signup
from gateway.residents.consent import consent_text
from gateway.residents.crypto import PhoneCipher
from gateway.residents.schemas import (
    ConsentText,
    HouseholdCreate,
    HouseholdImportReport,
    HouseholdPage,
    HouseholdRead,
    HouseholdSummary,
    HouseholdUpdate,
    ResidentCreate,
    ResidentPage,
    ResidentRead,
    RevealedPhone,
    RevealRequest,
    SignupDone,
    SignupStart,
    SignupStarted,
    SignupVerify,
    WithdrawalDone,
    WithdrawalStart,
)
from gateway.residents.sms import OutboxSender

router = APIRouter(tags=["residents"])

# Who keeps households and residents: the city's administrators and the district's officers.
Keeper = Annotated[Principal, allow(Role.CITY_ADMIN, Role.DISTRICT_OFFICER)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Offset = Annotated[int, Query(ge=0)]


def _cipher(request: Request) -> PhoneCipher:
    return state_of(request).phone_cipher


CipherDep = Annotated[PhoneCipher, Depends(_cipher)]

_VILLAGE: Final = ("village_not_found", "outside_scope")
_RESIDENT: Final = ("resident_not_found", "outside_scope")


@router.get("/residents/consent", operation_id="get_consent_text")
async def get_consent_text(settings: SettingsDep) -> ConsentText:
    """The consent text a resident signs up with, and its version (no login)."""
    return consent_text(settings.resident_consent_days)


@router.post(
    "/residents/signup",
    status_code=202,
    operation_id="start_resident_signup",
    responses=documented(
        "village_not_found",
        "invalid_phone_number",
        "consent_required",
        "outdated_consent",
        "signup_rate_limited",
    ),
)
async def start_signup(
    body: SignupStart,
    request: Request,
    session: SessionDep,
    city: CityDep,
    cipher: CipherDep,
    now: NowDep,
) -> SignupStarted:
    """A resident signs up (no login): a six-digit code goes by SMS to the number, valid five
    minutes; send it to ``/residents/signup/verify``."""
    state = state_of(request)
    sender = OutboxSender(session, cipher, city_id=city.id, now=now)
    source = client_address(request, state.settings.trusted_networks)
    return await signup.start_signup(
        session, city, cipher, sender, body, source=source or "unknown", now=now
    )


@router.post(
    "/residents/signup/verify",
    status_code=201,
    operation_id="verify_resident_signup",
    responses=documented("signup_not_found", "verification_expired", "invalid_verification_code"),
)
async def verify_signup(
    body: SignupVerify,
    request: Request,
    session: SessionDep,
    city: CityDep,
    cipher: CipherDep,
    settings: SettingsDep,
    now: NowDep,
) -> SignupDone:
    """The code from the SMS: the resident is signed up (or their consent renewed)."""
    return await signup.verify_signup(
        session, state_of(request).sessions, city, cipher, settings, body, now=now
    )


@router.post(
    "/residents/withdrawal",
    status_code=202,
    operation_id="start_resident_withdrawal",
    responses=documented("invalid_phone_number", "signup_rate_limited"),
)
async def start_withdrawal(
    body: WithdrawalStart,
    request: Request,
    session: SessionDep,
    city: CityDep,
    cipher: CipherDep,
    now: NowDep,
) -> SignupStarted:
    """A resident withdraws their consent (no login): a code goes by SMS to the number; send
    it to ``/residents/withdrawal/verify``."""
    sender = OutboxSender(session, cipher, city_id=city.id, now=now)
    source = client_address(request, state_of(request).settings.trusted_networks)
    return await signup.start_withdrawal(
        session, city, cipher, sender, body, source=source or "unknown", now=now
    )


@router.post(
    "/residents/withdrawal/verify",
    operation_id="verify_resident_withdrawal",
    responses=documented("signup_not_found", "verification_expired", "invalid_verification_code"),
)
async def verify_withdrawal(
    body: SignupVerify,
    request: Request,
    session: SessionDep,
    city: CityDep,
    cipher: CipherDep,
    now: NowDep,
) -> WithdrawalDone:
    """The code from the SMS: the number and the resident's choices are erased at once."""
    return await signup.verify_withdrawal(
        session, state_of(request).sessions, city, cipher, body, now=now
    )


@router.get(
    "/villages/{village_id}/households/summary",
    operation_id="get_household_summary",
    responses=documented(*_VILLAGE),
)
async def get_household_summary(
    village_id: int, session: SessionDep, user: Anyone, city: CityDep
) -> HouseholdSummary:
    """Counts only, never numbers: households, those with an indoor receiver, residents with
    consent in force by channel, and those erased."""
    return await service.village_summary(session, city, user, village_id)


@router.get(
    "/villages/{village_id}/households",
    operation_id="list_households",
    responses=documented(*_VILLAGE),
)
async def list_households(
    village_id: int,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> HouseholdPage:
    return await service.list_households(
        session, city, user, village_id, limit=limit, offset=offset
    )


@router.post(
    "/villages/{village_id}/households",
    status_code=201,
    operation_id="create_household",
    responses=documented(*_VILLAGE, "duplicate_household", "invalid_receiver", "invalid_volume"),
)
async def create_household(
    village_id: int,
    body: HouseholdCreate,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    now: NowDep,
) -> HouseholdRead:
    return await service.create_household(session, city, user, village_id, body, now=now)


@router.patch(
    "/households/{household_id}",
    operation_id="update_household",
    responses=documented(
        "household_not_found", "outside_scope", "invalid_receiver", "invalid_volume"
    ),
)
async def update_household(
    household_id: int,
    body: HouseholdUpdate,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    now: NowDep,
) -> HouseholdRead:
    """Link or unlink the indoor receiver, its volume (0-100, `null`: its own level; else 422
    `invalid_volume`) and whether it holds non-urgent notices in quiet hours. The receiver
    learns them from its provisioning document (`receiver`) at its next hourly ask."""
    return await service.update_household(session, city, user, household_id, body, now=now)


@router.post(
    "/villages/{village_id}/households:import",
    operation_id="import_households",
    responses=documented(
        *_VILLAGE, "invalid_household_csv", "csv_too_large", "duplicate_household"
    ),
)
async def import_households(
    village_id: int,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    cipher: CipherDep,
    settings: SettingsDep,
    now: NowDep,
    file: Annotated[
        UploadFile,
        File(
            description="CSV (UTF-8, BOM optional, or CP949) with the header address and any "
            "of receiver, phone, language, channels, consented_on, consent_version"
        ),
    ],
) -> HouseholdImportReport:
    """All rows or none: a file with any bad row imports nothing, and the 422 lists every
    problem by line (``lines``: line, code, ko, en)."""
    data = await read_upload(file)
    return await csv_import.import_households(
        session, city, cipher, settings, user, village_id, data, now=now
    )


@router.get(
    "/villages/{village_id}/residents",
    operation_id="list_residents",
    responses=documented(*_VILLAGE),
)
async def list_residents(
    village_id: int,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ResidentPage:
    """The village's residents, numbers masked (``010-****-5678``)."""
    return await service.list_residents(session, city, user, village_id, limit=limit, offset=offset)


@router.post(
    "/villages/{village_id}/residents",
    status_code=201,
    operation_id="create_resident",
    responses=documented(
        *_VILLAGE,
        "household_not_found",
        "invalid_phone_number",
        "invalid_consent_date",
        "duplicate_resident",
    ),
)
async def create_resident(
    village_id: int,
    body: ResidentCreate,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    cipher: CipherDep,
    settings: SettingsDep,
    now: NowDep,
) -> ResidentRead:
    """A resident whose consent the office collected (on paper, by phone)."""
    return await service.add_resident(
        session, city, cipher, settings, user, village_id, body, now=now
    )


@router.get(
    "/residents/{resident_id}", operation_id="get_resident", responses=documented(*_RESIDENT)
)
async def get_resident(
    resident_id: int, session: SessionDep, user: Keeper, city: CityDep
) -> ResidentRead:
    return await service.get_resident(session, city, user, resident_id)


@router.post(
    "/residents/{resident_id}/phone:reveal",
    operation_id="reveal_resident_phone",
    responses=documented(*_RESIDENT, "resident_erased", "phone_key_unavailable"),
)
async def reveal_phone(
    resident_id: int,
    body: RevealRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    user: Keeper,
    city: CityDep,
    cipher: CipherDep,
) -> RevealedPhone:
    """The full number, for a reason the audit log keeps with who asked and when."""
    request.state.audit_reason = body.reason
    response.headers["Cache-Control"] = "no-store"
    return await service.reveal_phone(session, city, cipher, user, resident_id)


@router.delete(
    "/residents/{resident_id}", operation_id="withdraw_resident", responses=documented(*_RESIDENT)
)
async def withdraw_resident(
    resident_id: int, session: SessionDep, user: Keeper, city: CityDep, now: NowDep
) -> ResidentRead:
    """Consent withdrawn: the number and personal fields are erased at once; the row stays,
    anonymised, for the village's counts."""
    return await service.withdraw_resident(session, city, user, resident_id, now=now)
