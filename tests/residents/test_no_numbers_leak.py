"""No phone number in the logs (at DEBUG, SQL included), in the database file, or in any API
answer but the reveal's: through sign-up, import, listing, reveal, withdrawal and bad input."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.flow.conftest import Stack
from tests.residents.conftest import CONSENT, sent_code, spellings, villages

pytestmark = pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)

SIGNED_UP = "01048217390"
IMPORTED = ("01039061457", "01072648813")
ADDED = "01051792046"
REFUSED = "0109182736"  # one digit short: refused, and still never written anywhere
NUMBERS = (SIGNED_UP, *IMPORTED, ADDED)


def _leaks(text: str) -> list[str]:
    found = [s for n in NUMBERS for s in spellings(n) if s in text]
    return found + ([REFUSED] if REFUSED in text else [])


async def test_numbers_stay_out_of_logs_files_and_answers(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The database's statements and parameters too, even after a test in this process ran the
    # gateway's own logging set-up, which quiets them (caplog restores the levels afterwards).
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    answers: list[tuple[str, str]] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        answers.append((response.request.url.path, response.text))

    stack.client.event_hooks["response"].append(keep)
    client = stack.client
    vid = (await villages(stack))[0]["id"]

    started = await client.post(
        "/api/v1/residents/signup",
        json={"village_id": vid, "phone": "+82 10 4821 7390", "channels": ["sms"], **CONSENT},
        headers={"Authorization": ""},
    )
    signup_id = started.json()["signup_id"]
    await client.post(
        "/api/v1/residents/signup/verify",
        json={"signup_id": signup_id, "code": "999999"},
        headers={"Authorization": ""},
    )
    verified = await client.post(
        "/api/v1/residents/signup/verify",
        json={"signup_id": signup_id, "code": await sent_code(stack, signup_id)},
        headers={"Authorization": ""},
    )
    assert verified.status_code == 201, verified.text

    day = (stack.clock.now() - timedelta(days=1)).date().isoformat()
    csv = (
        "address,phone,channels,consented_on\n"
        f"상촌리 1,010-3906-1457,sms,{day}\n"
        f"상촌리 2,+82 10-7264-8813,sms,{day}\n"
    )
    bad_csv = csv + f"상촌리 3,010-3906-1457,sms,{day}\n상촌리 4,{REFUSED},sms,{day}\n"
    files = "/api/v1/villages/{}/households:import"
    refused = await client.post(
        files.format(vid), files={"file": ("h.csv", bad_csv.encode("cp949"))}
    )
    assert refused.status_code == 422
    imported = await client.post(files.format(vid), files={"file": ("h.csv", csv.encode("cp949"))})
    assert imported.status_code == 200, imported.text

    resident = {
        "channels": ["sms"],
        "consented_at": stack.clock.now().isoformat(),
        "consent_version": "paper",
    }
    added = await client.post(
        f"/api/v1/villages/{vid}/residents", json={**resident, "phone": "010 5179 2046"}
    )
    assert added.status_code == 201
    await client.post(
        f"/api/v1/villages/{vid}/residents", json={**resident, "phone": "01051792046"}
    )
    await client.post(f"/api/v1/villages/{vid}/residents", json={**resident, "phone": REFUSED})
    await client.get(f"/api/v1/villages/{vid}/residents")
    await client.get(f"/api/v1/villages/{vid}/households")
    await client.get(f"/api/v1/villages/{vid}/households/summary")
    await client.get(f"/api/v1/residents/{verified.json()['resident_id']}")
    revealed = await client.post(
        f"/api/v1/residents/{added.json()['id']}/phone:reveal", json={"reason": "반송 문자 확인"}
    )
    assert revealed.json()["phone"] == "010-5179-2046"
    assert _leaks(revealed.text) != []  # the one answer that shows it, which the check sees
    await client.delete(f"/api/v1/residents/{verified.json()['resident_id']}")
    await stack.app.state.sweeper.purge_once()
    await client.get("/api/v1/audit-events", params={"limit": 500})

    # Answers: masked everywhere but the reveal's own.
    for path, text in answers:
        if path.endswith("phone:reveal"):
            continue
        assert _leaks(text) == [], (path, text)
    # Logs, at DEBUG, with the database's statements and their parameters.
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert "INSERT INTO residents" in logged  # the statements and their parameters were logged
    assert _leaks(logged) == []
    # The database's files: ciphertext and hashes, never the number.
    database = Path(stack.settings.database_url.split("///", 1)[1])
    for stored in database.parent.glob(database.name + "*"):
        raw = stored.read_bytes()
        for number in NUMBERS:
            for spelling in spellings(number):
                assert spelling.encode() not in raw, (stored.name, spelling)
        assert REFUSED.encode() not in raw
