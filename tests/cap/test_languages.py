"""A CAP alert with an <info> per language: Korean spoken, the others kept as the broadcast's
texts, the city's languages spoken after it and every one shown to residents in their own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lxml import etree

from gateway.auth import Role
from gateway.cap.xsd import NS
from tests.cap import documents as cap
from tests.cap.test_ingest import (
    cap_sender,
    districts,
    migrated_database_url,
    post,
    villages,
)
from tests.flow.conftest import Stack, stack
from tests.flow.test_broadcast_flow import _detail, _everyone_online
from tests.flow.test_languages import _pauses, _spoken

__all__ = ["migrated_database_url", "stack"]  # the fixtures, shared


@pytest.fixture
def stack_settings() -> dict[str, Any]:
    """This module's gateway speaks Vietnamese after Korean."""
    return {"spoken_languages": "vi"}


async def test_each_info_is_a_language_of_the_broadcast(stack: Stack) -> None:
    await _everyone_online(stack)
    places = await villages(stack)
    parts = await districts(stack)
    weather = await cap_sender(
        stack, cap.KMA, Role.DISTRICT_OFFICER, district_ids=[parts["d01"]["id"]]
    )
    area = cap.area("가람면", polygons=[cap.box([places["d01-v001"]])])

    def info(language: str, headline: str, description: str) -> str:
        return cap.rain(language, headline, description, area)

    document = cap.alert(
        "KMA-RAIN-LANG-1",
        sender=cap.KMA,
        infos=[
            info("en-US", "Heavy rain warning", "Heavy rain tonight."),
            info("ko-KR", "호우 경보", "오늘 밤 많은 비가 옵니다."),
            info("vi-VN", "Cảnh báo mưa lớn", "Đêm nay có mưa lớn."),
            info("fr-FR", "Alerte pluie", "Forte pluie ce soir."),
        ],
    )
    status, body = await post(stack, document, weather)
    assert status == 201, body
    assert body["language"] == "ko-KR"
    [broadcast_id] = body["broadcast_ids"]
    detail = await _detail(stack, broadcast_id)
    assert "많은 비" in detail["text"]
    assert set(detail["texts"]) == {"en", "vi"}, "Korean is the text; French is not a language"
    assert "Đêm nay có mưa lớn." in detail["texts"]["vi"]
    await stack.publish_pending()
    assert _pauses(await _spoken(stack, broadcast_id)) == 1, "Korean, then Vietnamese"

    public = httpx.AsyncClient(transport=stack.client._transport, base_url="http://gateway")
    async with public:
        url = f"/api/v1/notices/villages/{places['d01-v001']['id']}"
        [notice] = (await public.get(url, params={"lang": "en"})).json()["items"]
    assert (notice["language"], notice["text"]) == ("en", detail["texts"]["en"])
    # Said back in every language it has: Korean first, then each of its texts.
    said = etree.fromstring(
        (await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}/cap")).content
    )
    infos = said.findall("cap:info", namespaces=NS)
    assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["ko-KR", "en", "vi"]
    assert infos[2].findtext("cap:description", namespaces=NS) == detail["texts"]["vi"]
