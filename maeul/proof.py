"""`maeul proof`: export a broadcast's proofs of play and verify them, online or offline.

An export is signed by the gateway with its command-signing key; it is checked against the
city's key ring (each key endorsed by the one before), read from the gateway or, offline, from
the file `maeul proof export --keys` saved with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError

from gateway.deliveries.proof import export_signed_by, verify_export
from gateway.deliveries.schemas import ProofExport
from maeul import credentials
from wire import contract

proof_app = typer.Typer(
    help="Proof of play: signed receipts of speakers / 재생 증명", no_args_is_help=True
)

_MARK = {True: "정상", False: "실패", None: "해당 없음"}


def _get(path: str) -> str:
    url, token = credentials.resolve()
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120.0
    ) as client:
        response = client.get(path)
    if response.status_code != 200:
        typer.echo(response.text[:500], err=True)
        raise typer.Exit(2 if 400 <= response.status_code < 500 else 1)
    return response.text


def _fetch(broadcast_id: str) -> str:
    return _get(f"/api/v1/broadcasts/{broadcast_id}/proof")


def _fetch_ring() -> str:
    return _get("/api/v1/keys/ring")


@proof_app.command("export")
def export(
    broadcast_id: Annotated[str, typer.Argument(help="The broadcast's id")],
    keys: Annotated[
        Path | None,
        typer.Option("--keys", help="Also save the city's key ring here, to verify offline"),
    ] = None,
) -> None:
    """Write the broadcast's signed export (receipts, speakers' public keys, audio hashes) as
    JSON; with --keys, save the key ring that verifies the gateway's signature too."""
    body = json.loads(_fetch(broadcast_id))
    if keys is not None:
        keys.write_text(
            json.dumps(json.loads(_fetch_ring()), ensure_ascii=False, indent=2), encoding="utf-8"
        )
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2))


def _unreadable(what: str, exc: Exception) -> typer.Exit:
    typer.echo(f"{what}을 읽을 수 없습니다 / unreadable {what}: {exc}", err=True)
    return typer.Exit(2)


@proof_app.command("verify")
def verify(
    broadcast_id: Annotated[
        str | None, typer.Argument(help="The broadcast's id (read from the gateway)")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="An export (`maeul proof export`), checked offline"),
    ] = None,
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys", help="The key ring saved by `maeul proof export --keys` (else fetched)"
        ),
    ] = None,
) -> None:
    """Check the gateway's signature over the export against the city's key ring, then every
    played speaker's receipt again: its Ed25519 signature against the speaker's public key, its
    audio hash against the broadcast's encodings, its played_ms against their length, its
    level above silence. Exits 1 if the export was changed or any proof fails or was refused."""
    if (broadcast_id is None) == (file is None):
        typer.echo(
            "방송 id 또는 --file 중 하나만 주세요. / Give a broadcast id or --file.", err=True
        )
        raise typer.Exit(2)
    try:
        text = file.read_text(encoding="utf-8") if file is not None else _fetch(str(broadcast_id))
        body: dict[str, Any] = json.loads(text)
        export = ProofExport.model_validate(body)
    except (OSError, ValueError, ValidationError) as exc:
        raise _unreadable("내보낸 파일", exc) from None
    try:
        ring_text = keys.read_text(encoding="utf-8") if keys is not None else _fetch_ring()
        ring = contract.KeyRing.model_validate_json(ring_text)
    except (OSError, ValueError, ValidationError) as exc:
        raise _unreadable("키 목록", exc) from None
    typer.echo(f"방송 {export.broadcast_id} 재생 증명 확인 ({export.city})")
    refused = export_signed_by(body, ring)
    if refused is not None:
        typer.echo(f"실패\t게이트웨이 서명\t{refused}")
        raise typer.Exit(1)
    root = ring.keys[0]
    typer.echo(
        f"정상\t게이트웨이 서명\t키 {export.key_id} (키 목록의 첫 키 {root.key_id}: "
        f"{root.public_key})"
    )
    checked = verify_export(export)
    for item in checked:
        typer.echo(f"{_MARK[item.ok]}\t{item.code}\t{item.why}")
    good = sum(item.ok is True for item in checked)
    bad = sum(item.ok is False for item in checked)
    typer.echo(
        f"정상 {good}대, 실패 {bad}대, 재생하지 않아 증명 없음 {len(checked) - good - bad}대"
    )
    if bad:
        raise typer.Exit(1)
