"""HTTP routes for speakers: manage them one by one or from CSV, and list the fleet's identities."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile

from gateway.auth import Admin, Anyone
from gateway.deps import CityDep, NowDep, SessionDep, state_of
from gateway.devicesec.brokeradmin import after_change
from gateway.error_catalog import documented
from gateway.places import csv_import
from gateway.speakers import bulk, receipt_keys, service
from gateway.speakers.schemas import (
    FleetPage,
    Kind,
    ReceiptKeyEnroll,
    ReceiptKeyRead,
    ReceiptKeysEnroll,
    ReceiptKeysEnrolled,
    SpeakerCreate,
    SpeakerPage,
    SpeakerRead,
    SpeakersImportReport,
    SpeakerUpdate,
)

router = APIRouter(tags=["speakers"])

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Offset = Annotated[int, Query(ge=0)]


@router.get(
    "/speakers",
    operation_id="list_speakers",
    responses=documented("village_not_found", "district_not_found"),
)
async def list_speakers(
    session: SessionDep,
    _user: Anyone,
    city: CityDep,
    village_id: int | None = None,
    district_id: int | None = None,
    online: bool | None = None,
    kind: Kind | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> SpeakerPage:
    return await service.list_speakers(
        session,
        city,
        village_id=village_id,
        district_id=district_id,
        online=online,
        kind=kind,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/speakers",
    status_code=201,
    operation_id="create_speaker",
    responses=documented("village_not_found", "duplicate_code"),
)
async def create_speaker(
    body: SpeakerCreate,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
) -> SpeakerRead:
    request.state.audit_target = {"code": body.code}
    return await service.create_speaker(session, city, body, now=now)


# Declared before /speakers/{speaker_id} so that "fleet" is never read as an id.
@router.get("/speakers/fleet", operation_id="get_fleet")
async def get_fleet(
    session: SessionDep,
    _user: Anyone,
    city: CityDep,
    limit: Annotated[int | None, Query(ge=1, description="Leave out for the whole fleet.")] = None,
    offset: Offset = 0,
) -> FleetPage:
    """Every speaker's wire identity (city, district and village codes, codecs), by id."""
    return await service.fleet(session, city, limit=limit, offset=offset)


@router.get(
    "/speakers/{speaker_id}",
    operation_id="get_speaker",
    responses=documented("speaker_not_found"),
)
async def get_speaker(
    speaker_id: int, session: SessionDep, _user: Anyone, city: CityDep
) -> SpeakerRead:
    return await service.get_speaker(session, city, speaker_id)


@router.patch(
    "/speakers/{speaker_id}",
    operation_id="update_speaker",
    responses=documented("speaker_not_found", "village_not_found", "duplicate_code"),
)
async def update_speaker(
    speaker_id: int,
    body: SpeakerUpdate,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    request: Request,
) -> SpeakerRead:
    """A speaker moved to another village reads that village's topics at once; a new code
    revokes its broker password (issued for the old code, its user name)."""
    updated = await service.update_speaker(session, city, speaker_id, body)
    await after_change(state_of(request), session)
    return updated


@router.delete(
    "/speakers/{speaker_id}",
    status_code=204,
    operation_id="delete_speaker",
    responses=documented("speaker_not_found"),
)
async def delete_speaker(
    speaker_id: int, session: SessionDep, _user: Admin, city: CityDep, request: Request
) -> None:
    """Remove a speaker, and with it the record of what was delivered to it and its broker
    user."""
    await service.delete_speaker(session, city, speaker_id)
    await after_change(state_of(request), session)


@router.post(
    "/speakers/import",
    operation_id="import_speakers",
    responses=documented("invalid_csv", "csv_too_large"),
)
async def import_speakers(
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
    request: Request,
    file: Annotated[
        UploadFile,
        File(
            description="UTF-8 CSV (BOM optional) with the header "
            "speaker_code,village_code,kind,codecs; codecs like opus;mp3"
        ),
    ],
) -> SpeakersImportReport:
    """Create or update speakers by code: all rows or none."""
    data = await csv_import.read_upload(file)
    report = await bulk.import_speakers(session, city, data, now=now)
    await after_change(state_of(request), session)
    return report


@router.put(
    "/speakers/receipt-keys",
    operation_id="enroll_receipt_keys",
    responses=documented("speaker_not_found", "invalid_receipt_key", "invalid_receipt_key_proof"),
)
async def enroll_receipt_keys(
    body: ReceiptKeysEnroll, session: SessionDep, _user: Admin, city: CityDep, now: NowDep
) -> ReceiptKeysEnrolled:
    """Enroll the receipt keys of many speakers by code, all or none (a fleet's installation)."""
    return await receipt_keys.enroll_receipt_keys(session, city, body.keys, now=now)


@router.put(
    "/speakers/{speaker_id}/receipt-key",
    operation_id="enroll_receipt_key",
    responses=documented("speaker_not_found", "invalid_receipt_key", "invalid_receipt_key_proof"),
)
async def enroll_receipt_key(
    speaker_id: int,
    body: ReceiptKeyEnroll,
    session: SessionDep,
    _user: Admin,
    city: CityDep,
    now: NowDep,
) -> ReceiptKeyRead:
    """Enroll the public half of the speaker's own Ed25519 receipt key (it makes the key and
    keeps the private half): its played acks must then carry receipts signed with it."""
    return await receipt_keys.enroll_receipt_key(session, city, speaker_id, body, now=now)
