"""`maeul proof`: export a broadcast's proofs of play and verify them, online or offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import ValidationError

from gateway.deliveries.proof import verify_export
from gateway.deliveries.schemas import ProofExport
from maeul import credentials

proof_app = typer.Typer(
    help="Proof of play: signed receipts of speakers / 재생 증명", no_args_is_help=True
)

_MARK = {True: "정상", False: "실패", None: "해당 없음"}


def _fetch(broadcast_id: str) -> str:
    url, token = credentials.resolve()
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120.0
    ) as client:
        response = client.get(f"/api/v1/broadcasts/{broadcast_id}/proof")
    if response.status_code != 200:
        typer.echo(response.text[:500], err=True)
        raise typer.Exit(2 if 400 <= response.status_code < 500 else 1)
    return response.text


@proof_app.command("export")
def export(
    broadcast_id: Annotated[str, typer.Argument(help="The broadcast's id")],
) -> None:
    """Write the broadcast's receipts, speakers' public keys and audio hashes as JSON."""
    body = json.loads(_fetch(broadcast_id))
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2))


@proof_app.command("verify")
def verify(
    broadcast_id: Annotated[
        str | None, typer.Argument(help="The broadcast's id (read from the gateway)")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="An export (`maeul proof export`), checked offline"),
    ] = None,
) -> None:
    """Check every played speaker's receipt again: its Ed25519 signature against the speaker's
    public key, its audio hash against the broadcast's encodings, its played_ms against their
    length. Exits 1 if any check fails."""
    if (broadcast_id is None) == (file is None):
        typer.echo(
            "방송 id 또는 --file 중 하나만 주세요. / Give a broadcast id or --file.", err=True
        )
        raise typer.Exit(2)
    try:
        text = file.read_text(encoding="utf-8") if file is not None else _fetch(str(broadcast_id))
        export = ProofExport.model_validate_json(text)
    except (OSError, ValidationError) as exc:
        typer.echo(f"내보낸 파일을 읽을 수 없습니다 / unreadable export: {exc}", err=True)
        raise typer.Exit(2) from None
    checked = verify_export(export)
    typer.echo(f"방송 {export.broadcast_id} 재생 증명 확인 ({export.city})")
    for item in checked:
        typer.echo(f"{_MARK[item.ok]}\t{item.code}\t{item.why}")
    good = sum(item.ok is True for item in checked)
    bad = sum(item.ok is False for item in checked)
    typer.echo(f"정상 {good}대, 실패 {bad}대, 해당 없음 {len(checked) - good - bad}대")
    if bad:
        raise typer.Exit(1)
