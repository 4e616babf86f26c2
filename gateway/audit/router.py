"""HTTP routes of the audit log: read it, and verify its chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from gateway.audit import checkpoints, service
from gateway.audit.schemas import AuditEventRead, AuditPage, AuditVerification, CheckpointKey
from gateway.auth import Principal, Role, allow
from gateway.deps import CityDep, SessionDep, SettingsDep
from gateway.error_catalog import documented

router = APIRouter(tags=["audit"])

Reader = Annotated[Principal, allow(Role.CITY_ADMIN, Role.AUDITOR)]


@router.get("/audit-events", operation_id="list_audit_events")
async def list_audit_events(
    session: SessionDep,
    _reader: Reader,
    city: CityDep,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    rows, total = await service.page(
        session,
        city_id=city.id,
        action=action,
        actor=actor,
        since=since,
        limit=limit,
        offset=offset,
    )
    return AuditPage(
        items=[AuditEventRead.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/audit-events/verify",
    operation_id="verify_audit_log",
    responses=documented(
        "checkpoint_key_missing", notes={"checkpoint_key_missing": "A checkpoint file, but no key."}
    ),
)
async def verify_audit_log(
    session: SessionDep, _reader: Reader, settings: SettingsDep
) -> AuditVerification:
    """Recompute the whole hash chain, and hold it against this replica's signed checkpoints;
    names the first row that was altered or removed."""
    result = await service.verify(session, checkpoints=await service.own_checkpoints(settings))
    return AuditVerification(
        rows=result.rows,
        ok=result.ok,
        first_bad_seq=result.first_bad_seq,
        problem=result.problem,
        checkpoints=result.checkpoints,
    )


@router.get(
    "/audit-events/checkpoint-key",
    operation_id="get_audit_checkpoint_key",
    responses=documented("checkpoint_key_missing"),
)
async def get_audit_checkpoint_key(_reader: Reader, settings: SettingsDep) -> CheckpointKey:
    """The public key that signs the audit checkpoints, to check them with
    (`maeul audit verify --checkpoints FILE --public-key KEY`)."""
    key = await service.checkpoint_public_key(settings)
    return CheckpointKey(algorithm="ed25519", public_key=checkpoints.public_key_text(key))
