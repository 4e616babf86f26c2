"""The console's map on the office's 1366x768 screen: an officer draws a circle around two
villages of their district, sees exactly those listed, sends to that area, and the broadcast
records the circle and exactly those villages; a polygon and a village outside their area too."""

from __future__ import annotations

import math
import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Stack, screenshot
from tests.support.axe import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

LONG = 120_000  # ms: a bound for a loaded machine; the test waits for states, not time


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def _centre_of(locator: Locator) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _listed(page: Page) -> list[str]:
    return sorted(page.locator("#area-list li").all_inner_texts())


def test_officer_sends_to_a_circle_drawn_around_two_villages(office: Page, stack: Stack) -> None:
    page = office
    villages = {v["id"]: v for v in stack.api.get("/api/v1/villages").json()["items"]}
    own = [villages[i] for i in stack.district_village_ids]
    spot = {v["id"]: (v["lat"], v["lon"]) for v in villages.values()}
    # The two nearest villages of the district, and a radius around their midpoint that reaches
    # both and no other village.
    first, second = min(
        ((a, b) for a in own for b in own if a["id"] < b["id"]),
        key=lambda pair: _metres(spot[pair[0]["id"]], spot[pair[1]["id"]]),
    )
    middle = (
        (first["lat"] + second["lat"]) / 2,
        (first["lon"] + second["lon"]) / 2,
    )
    reach = _metres(middle, spot[first["id"]])
    others = min(_metres(middle, spot[i]) for i in spot if i not in (first["id"], second["id"]))
    radius = math.ceil((reach + 100) / 100) * 100
    assert radius + 100 < others, (reach, others)

    page.goto("/console")
    page.get_by_label("아이디").fill(stack.officer)
    page.get_by_label("비밀번호").fill(stack.password)
    page.get_by_role("button", name="로그인").click()
    page.get_by_role("button", name="지도에서 고르기").click()
    dialog = page.get_by_role("dialog", name="지도에서 받을 마을 고르기")
    expect(dialog).to_be_visible()
    points = dialog.locator("[data-village-point]")
    expect(points).to_have_count(len(villages))

    # The circle: a click between the two villages, then the radius.
    a = _centre_of(dialog.locator(f"[data-village-point='{first['id']}']"))
    b = _centre_of(dialog.locator(f"[data-village-point='{second['id']}']"))
    page.mouse.click((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    dialog.get_by_role("slider", name="반지름 (미터)").fill(str(radius))
    expect(dialog.locator("#area-result")).to_have_text(re.compile("마을 2곳이 이 지역에 듭니다"))
    assert _listed(page) == sorted([first["name"], second["name"]])
    expect(dialog.locator("[data-village-point].covered")).to_have_count(2)
    tools = dialog.locator(".area-tools label").all()
    for control in [*dialog.get_by_role("button").all(), *tools]:
        box = control.bounding_box()
        assert box is not None
        assert box["height"] >= 48, (control.inner_text(), box)
    assert_accessible(page, "console map, a circle drawn")
    screenshot(page, "console-map", full_page=False)

    # A polygon around one village, by clicks and 닫기.
    dialog.get_by_label("다각형").check()
    x, y = a
    for dx, dy in ((-30, -30), (30, -30), (30, 30), (-30, 30)):
        page.mouse.click(x + dx, y + dy)
    dialog.get_by_role("button", name="다각형 닫기").click()
    expect(dialog.locator("#area-result")).to_have_text(re.compile("마을 1곳이 이 지역에 듭니다"))
    assert _listed(page) == [first["name"]]

    # A village of another district is marked, and such an area cannot be chosen.
    dialog.get_by_label("원").check()
    dialog.get_by_label(re.compile("^중심 마을")).select_option(str(stack.other_village_id))
    expect(dialog.locator("#area-list li.outside")).to_contain_text(stack.other_village_name)
    expect(dialog.locator("#area-result")).to_contain_text("담당 지역 밖")
    use = dialog.get_by_role("button", name="이 지역으로 보내기")
    expect(use).to_be_disabled()

    # Back to the circle, drawn by dragging out its radius, set exactly with the slider; sent.
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2 + 200, (a[1] + b[1]) / 2, steps=4)
    page.mouse.up()
    expect(dialog.get_by_role("slider", name="반지름 (미터)")).not_to_have_value(str(radius))
    dialog.get_by_role("slider", name="반지름 (미터)").fill(str(radius))
    expect(dialog.locator("#area-result")).to_have_text(re.compile("마을 2곳이 이 지역에 듭니다"))
    sent_area: list[str] = []
    page.on(
        "request",
        lambda r: sent_area.append(r.post_data or "") if r.url.endswith("/broadcasts") else None,
    )
    use.click()
    expect(dialog).to_have_count(0)
    expect(page.locator("#area-summary")).to_contain_text(first["name"])
    expect(page.locator("#send-summary")).to_contain_text("지도에서 고른 지역, 마을 2곳")
    page.get_by_label("방송할 말").fill("마을 회관 앞 도로 공사로 오늘 오후 통행을 막습니다.")
    page.get_by_role("button", name="방송 보내기", exact=True).click()
    page.wait_for_url(re.compile(r"#/board/[0-9a-f]{32}$"), timeout=LONG)
    broadcast = page.url.rsplit("/", 1)[1]

    target = stack.api.get(f"/api/v1/broadcasts/{broadcast}", params={"detail": "false"}).json()[
        "target"
    ]
    circle = target["area"]["circle"]
    assert circle["radius_m"] == radius
    # The click lands within a few metres of the midpoint (a pixel is some ten metres here).
    assert _metres((circle["lat"], circle["lon"]), middle) < 100, circle
    assert sorted(target["village_ids"]) == sorted([first["id"], second["id"]])
