"""HTTP routes for deliveries: a broadcast's proofs of play, exported for offline checking."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import signing
from gateway.auth import Anyone
from gateway.broadcasts import reading as broadcast_reading
from gateway.deliveries import proof
from gateway.deliveries.schemas import ProofExport
from gateway.deps import CityDep, NowDep, SealDep, SessionDep
from gateway.error_catalog import documented

router = APIRouter(tags=["broadcasts"])


@router.get(
    "/broadcasts/{broadcast_id}/proof",
    operation_id="export_proof_of_play",
    responses=documented("broadcast_not_found"),
)
async def export_proof_of_play(
    broadcast_id: str,
    session: SessionDep,
    user: Anyone,
    city: CityDep,
    now: NowDep,
    seal: SealDep,
) -> ProofExport:
    """Every speaker's signed receipt of the broadcast, its enrolled receipt public key and the
    broadcast's encodings, signed by the gateway's command-signing key (``key_id``; verify it
    with the key ring of ``GET /api/v1/keys/ring``): `maeul proof verify --file` checks it all
    again, offline."""
    await broadcast_reading.check_readable(session, user, city.id, broadcast_id)
    await broadcast_reading.get_broadcast(session, city.id, broadcast_id)
    signer = await signing.active_signer(session, now, seal)
    return await proof.export_of(session, broadcast_id, city_code=city.code, now=now, signer=signer)
