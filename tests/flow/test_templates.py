"""Templates: the seeded set, placeholders filled per use, and broadcasts made from them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.auth import Role
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import _commands, _everyone_online
from tests.support.people import make_person


async def _templates(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    response = await stack.client.get("/api/v1/templates", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _by_name(stack: Stack, name: str) -> dict[str, Any]:
    [template] = await _templates(stack, name=name)
    return template


async def test_the_seed_gives_city_and_district_templates(stack: Stack) -> None:
    names = {t["name"]: t for t in await _templates(stack)}
    for name in ("산불 예방", "폭염 주의", "한파 주의", "보이스피싱 주의", "교통사고 주의"):
        assert names[name]["district_id"] is None
    assert names["마을 회의 안내"]["placeholders"] == ["날짜", "시각", "장소", "안건"]
    assert names["보이스피싱 주의"]["category"] == "crime_prevention"
    district_own = [t for t in names.values() if t["district_id"] is not None]
    assert len(district_own) == 2, "one office template for each district of the tiny city"

    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    first = districts[0]["id"]
    visible = await _templates(stack, district_id=first)
    assert {t["district_id"] for t in visible} == {None, first}


async def test_render_fills_placeholders_and_names_mistakes(stack: Stack) -> None:
    meeting = await _by_name(stack, "마을 회의 안내")
    url = f"/api/v1/templates/{meeting['id']}/render"
    values = {"날짜": "11월 25일", "시각": "오후 2시", "장소": "마을 회관", "안건": "겨울 제설"}
    response = await stack.client.post(url, json={"values": values})
    assert response.status_code == 200, response.text
    text = response.json()["text"]
    assert "11월 25일 오후 2시에 마을 회관에서" in text
    assert "{" not in text

    response = await stack.client.post(url, json={"values": {**values, "시간": "3시"}})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "unknown_placeholder"
    assert "시간" in body["detail"], "the error names the unknown placeholder"

    response = await stack.client.post(url, json={"values": {"날짜": "25일"}})
    assert response.status_code == 422
    assert response.json()["error"] == "missing_placeholder"


async def test_templates_are_managed_with_clear_errors(stack: Stack) -> None:
    body = {
        "name": "경로당 난방 안내",
        "category": "village_notice",
        "title": "{마을} 경로당",
        "body": "{마을} 경로당 난방을 {날짜}부터 시작합니다. 중괄호는 {{이렇게}} 씁니다.",
    }
    created = await stack.client.post("/api/v1/templates", json=body)
    assert created.status_code == 201, created.text
    template = created.json()
    assert template["placeholders"] == ["마을", "날짜"]

    again = await stack.client.post("/api/v1/templates", json=body)
    assert (again.status_code, again.json()["error"]) == (409, "duplicate_template")

    broken = await stack.client.post(
        "/api/v1/templates", json={**body, "name": "깨진 틀", "body": "{마을 경로당"}
    )
    assert (broken.status_code, broken.json()["error"]) == (422, "invalid_template")

    rendered = await stack.client.post(
        f"/api/v1/templates/{template['id']}/render",
        json={"values": {"마을": "송정", "날짜": "12월 1일"}},
    )
    assert rendered.json()["title"] == "송정 경로당"
    assert rendered.json()["text"].endswith("중괄호는 {이렇게} 씁니다.")

    patched = await stack.client.patch(
        f"/api/v1/templates/{template['id']}", json={"body": "{마을} 난방 시작: {날짜}"}
    )
    assert patched.json()["placeholders"] == ["마을", "날짜"]
    moved = await stack.client.patch(f"/api/v1/templates/{template['id']}", json={"district_id": 1})
    assert (moved.status_code, moved.json()["error"]) == (422, "invalid_request")
    deleted = await stack.client.delete(f"/api/v1/templates/{template['id']}")
    assert deleted.status_code == 204
    missing = await stack.client.get(f"/api/v1/templates/{template['id']}")
    assert (missing.status_code, missing.json()["error"]) == (404, "template_not_found")


async def test_a_broadcast_from_a_template_reads_the_filled_text(stack: Stack) -> None:
    await _everyone_online(stack)
    heat = await _by_name(stack, "폭염 주의")
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={
            "category": heat["category"],
            "all_villages": "true",
            "template_id": str(heat["id"]),
            "values": json.dumps({"기온": 36}),
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["title"] == "폭염 주의 안내"
    assert "최고 기온이 36도까지" in body["text"]
    await stack.publish_pending()
    [(_, command)] = _commands(stack)
    assert command.text == body["text"]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"values": json.dumps({"시간": "3시"})}, "unknown_placeholder"),
        ({"values": json.dumps({})}, "missing_placeholder"),
        ({"values": "[1, 2]"}, "invalid_values"),
        ({"values": json.dumps({"기온": 35}), "text": "직접 쓴 문구"}, "text_and_template"),
    ],
)
async def test_a_broadcast_from_a_template_refuses_bad_values(
    stack: Stack, form: dict[str, str], code: str
) -> None:
    heat = await _by_name(stack, "폭염 주의")
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={
            "category": "administrative",
            "all_villages": "true",
            "template_id": str(heat["id"]),
            **form,
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert not stack.bus.published


async def test_values_without_a_template_and_an_unknown_template(stack: Stack) -> None:
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true", "values": '{"a": "b"}'},
    )
    assert (response.status_code, response.json()["error"]) == (422, "values_without_template")
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true", "template_id": "999999"},
    )
    assert (response.status_code, response.json()["error"]) == (404, "template_not_found")


async def test_only_who_may_send_a_template_everywhere_it_covers_may_change_it(
    stack: Stack,
) -> None:
    """A district officer once rewrote the city's wildfire evacuation template: changing a
    template now takes the rights to send its category to every place it is kept for."""
    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    mine, other = districts[0]["id"], districts[1]["id"]
    officer = await make_person(stack.client, Role.DISTRICT_OFFICER, district_ids=[mine])
    safety = await make_person(stack.client, Role.SAFETY_OFFICER)
    evacuation = await _by_name(stack, "산불 대피")
    heat = await _by_name(stack, "폭염 주의")
    [own] = [t for t in await _templates(stack) if t["district_id"] == mine]
    [foreign] = [t for t in await _templates(stack) if t["district_id"] == other]

    def refused(response: Any) -> None:
        assert response.status_code == 403, response.text
        body = response.json()
        assert body["error"] == "template_outside_rights"
        assert "템플릿" in body["detail"]
        assert "template" in body["detail"]

    for template in (evacuation, heat, foreign):
        url = f"/api/v1/templates/{template['id']}"
        refused(
            await stack.client.patch(
                url, json={"body": "대피할 필요 없습니다"}, headers=officer.headers
            )
        )
        refused(await stack.client.delete(url, headers=officer.headers))
        kept = await stack.client.get(url)
        assert kept.json()["body"] == template["body"], "nothing changed"
    for district_id in (None, other):
        refused(
            await stack.client.post(
                "/api/v1/templates",
                json={
                    "name": f"남의 틀 {district_id}",
                    "category": "administrative",
                    "body": "안내",
                    "district_id": district_id,
                },
                headers=officer.headers,
            )
        )
    ok = await stack.client.patch(
        f"/api/v1/templates/{own['id']}", json={"title": "우리 동 안내"}, headers=officer.headers
    )
    assert ok.status_code == 200, ok.text

    # The safety office keeps the city's disaster templates, and only those.
    url = f"/api/v1/templates/{evacuation['id']}"
    patched = await stack.client.patch(
        url, json={"title": "산불 대피 명령"}, headers=safety.headers
    )
    assert patched.status_code == 200, patched.text
    refused(
        await stack.client.patch(url, json={"category": "administrative"}, headers=safety.headers)
    )
    refused(
        await stack.client.patch(
            f"/api/v1/templates/{heat['id']}", json={"title": "더위"}, headers=safety.headers
        )
    )
