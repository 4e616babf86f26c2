"""Sends quiet hours are holding: before another send now, the CLI asks whether it repeats one
that is already waiting (the same text or the same recording, to the same villages), since both
would go out when quiet hours end. The gateway does not keep a recording's digest, so the CLI
remembers those of the sends it saw held, next to its login."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx

from maeul import credentials

_KEPT = 200  # digests of held recordings remembered; older ones are dropped


def _path() -> Path:
    return credentials.path().with_name("held.json")


def _digests() -> dict[str, str]:
    try:
        found = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def digest(file: Path) -> str:
    sha = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def remember(schedule_id: str, file: Path) -> None:
    """Remember the recording of a send quiet hours just held."""
    kept = _digests()
    kept[schedule_id] = digest(file)
    kept = dict(list(kept.items())[-_KEPT:])
    target = _path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(kept))
    os.replace(temporary, target)


def _same_targets(target: dict[str, Any], form: dict[str, str | list[str]]) -> bool:
    if target.get("area"):
        return False
    return (
        bool(target.get("all")) == (form.get("all_villages") == "true")
        and sorted(int(v) for v in target.get("village_ids", []))
        == sorted(int(v) for v in form.get("village_ids", []))
        and sorted(int(d) for d in target.get("district_ids", []))
        == sorted(int(d) for d in form.get("district_ids", []))
    )


def waiting_twin(
    client: httpx.Client, form: dict[str, str | list[str]], file: Path | None
) -> dict[str, Any] | None:
    """A held send (a quiet-hours schedule not yet sent) with the same category, the same text
    or recording and the same targets as `form`, if there is one."""
    if "area" in form or "template_id" in form:
        return None
    answer = client.get("/api/v1/schedules", params={"state": "active", "limit": 200})
    if answer.status_code != 200:
        return None
    items: list[dict[str, Any]] = answer.json()["items"]
    held = [s for s in items if s["origin"] == "quiet_hours"]
    mine = digest(file) if file is not None else None
    kept = _digests() if file is not None else {}
    for schedule in held:
        if schedule["category"] != form["category"] or not _same_targets(schedule["target"], form):
            continue
        if file is None and schedule["source"] == "text" and schedule["text"] == form.get("text"):
            return schedule
        if (
            file is not None
            and schedule["source"] == "recording"
            and kept.get(schedule["id"]) == mine
        ):
            return schedule
    return None
