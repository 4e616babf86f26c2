"""Browser fixtures: a seeded gateway with simulated speakers, and Debian's Chromium."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from devices.simulator import Fleet
from tests.e2e.harness import TOKEN, GatewayProcess, fleet_for, wait_online
from tests.support.chromium import CHROMIUM_ARGS, FAKE_MICROPHONE, require_chromium
from tests.support.databases import seed_database
from tests.support.people import access_token_now, bearer

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "maeul-browser-test-1"
# Simulated speakers play this many times faster than real time: the board reaches `played` soon.
SPEED = 8.0

T = TypeVar("T")


class LoopThread:
    """An event loop in a thread of its own, so the sync Playwright API can drive the tests while
    the simulated speakers keep running."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fleet-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Stack:
    """The gateway under test, its places and the people who log in to it."""

    url: str
    api: httpx.Client
    district_id: int
    district_name: str
    district_village_ids: list[int]
    other_village_id: int
    other_village_name: str
    head_village_id: int
    head_village_name: str
    database_url: str
    admin: str = "admin"
    safety: str = "safety"
    officer: str = "officer"
    head: str = "ijang"
    password: str = PASSWORD

    def token(self, username: str) -> str:
        return access_token_now(self.api, username, PASSWORD)


VILLAGE_NOTICES_PER_HOUR = 50


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, mqtt_url: str) -> Iterator[Stack]:
    """The tiny preset (two districts, five villages, eight speakers), every speaker online."""
    folder = tmp_path_factory.mktemp("web")
    loop = LoopThread()
    database_url = loop.run(
        seed_database(f"sqlite+aiosqlite:///{folder / 'maeul.db'}", preset="tiny")
    )
    gateway = GatewayProcess(
        database_url=database_url,
        mqtt_url=mqtt_url,
        data_dir=folder,
        city_code="jinju",
        # One head's village receives every phone test's sends within the hour, more than a
        # village may (the limit is tested in tests/flow/test_send_limits.py); web push on, to a
        # push service on this machine (tests/browser/test_push_page.py).
        extra_env={
            "GATEWAY_RATE_LIMIT_VILLAGE_NOTICES_PER_HOUR": str(VILLAGE_NOTICES_PER_HOUR),
            "GATEWAY_PUSH_VAPID_SUBJECT": "mailto:ops@maeul.example.go.kr",
            "GATEWAY_PUSH_ALLOW_LOOPBACK_ENDPOINTS": "true",
        },
    )
    fleet: Fleet | None = None
    try:
        loop.run(gateway.start())

        async def started() -> Fleet:
            async with gateway.client() as client:
                running: Fleet = await fleet_for(
                    client, mqtt_url, gateway.url, speed=SPEED, receipts=True
                )
                await wait_online(client, len(running.speakers), exactly=True)
                return running

        fleet = loop.run(started())
        headers = bearer(TOKEN)
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as api:
            yield _prepare(gateway.url, api, database_url)
    finally:
        if fleet is not None:
            loop.run(fleet.stop())
        gateway.stop()
        loop.close()


def _prepare(url: str, api: httpx.Client, database_url: str) -> Stack:
    districts = api.get("/api/v1/districts").json()["items"]
    district, other = districts[0], districts[1]
    own = api.get("/api/v1/villages", params={"district_id": district["id"]}).json()["items"]
    others = api.get("/api/v1/villages", params={"district_id": other["id"]}).json()["items"]
    head_village = own[0]
    for username, name, role, district_ids, village_ids in (
        ("admin", "시 관리자", "city_admin", [], []),
        ("safety", "시 안전 담당", "safety_officer", [], []),
        ("officer", f"{district['name']} 담당", "district_officer", [district["id"]], []),
        ("ijang", f"{head_village['name']} 이장", "village_head", [], [head_village["id"]]),
    ):
        response = api.post(
            "/api/v1/users",
            json={
                "username": username,
                "display_name": name,
                "role": role,
                "password": PASSWORD,
                "district_ids": district_ids,
                "village_ids": village_ids,
            },
        )
        assert response.status_code == 201, response.text
    return Stack(
        url=url,
        api=api,
        district_id=district["id"],
        district_name=district["name"],
        district_village_ids=[v["id"] for v in own],
        other_village_id=others[0]["id"],
        other_village_name=others[0]["name"],
        head_village_id=head_village["id"],
        head_village_name=head_village["name"],
        database_url=database_url,
    )


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


def _watch_policy(page: Page) -> list[str]:
    """What the pages' Content-Security-Policy refused (Chromium says so on the console): the
    policy must never have to refuse anything of the pages' own."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return refused


@pytest.fixture
def desktop(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(
        base_url=stack.url, viewport={"width": 1440, "height": 960}, locale="ko-KR"
    )
    page = context.new_page()
    refused = _watch_policy(page)
    yield page
    context.close()
    assert refused == [], "the page broke its own Content-Security-Policy"


@pytest.fixture
def office(browser: Browser, stack: Stack) -> Iterator[Page]:
    """The district office's PC: a 1366x768 screen, the most common one in offices."""
    context = browser.new_context(
        base_url=stack.url, viewport={"width": 1366, "height": 768}, locale="ko-KR"
    )
    page = context.new_page()
    refused = _watch_policy(page)
    yield page
    context.close()
    assert refused == [], "the page broke its own Content-Security-Policy"


# Phones the village heads carry: a large one, a common one and a small one (CSS pixels).
PHONE_SIZES = {412: 915, 393: 852, 360: 780}


def _phone_context(
    browser: Browser, stack: Stack, width: int = 412, **options: Any
) -> BrowserContext:
    return browser.new_context(
        base_url=stack.url,
        viewport={"width": width, "height": PHONE_SIZES[width]},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="ko-KR",
        **options,
    )


@pytest.fixture
def phone(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = _phone_context(browser, stack)
    page = context.new_page()
    refused = _watch_policy(page)
    yield page
    context.close()
    assert refused == [], "the page broke its own Content-Security-Policy"


def _phone_page(browser: Browser, stack: Stack, width: int, **options: Any) -> Iterator[Page]:
    context = _phone_context(browser, stack, width, **options)
    page = context.new_page()
    refused = _watch_policy(page)
    yield page
    context.close()
    assert refused == [], "the page broke its own Content-Security-Policy"


@pytest.fixture
def phone_393(browser: Browser, stack: Stack) -> Iterator[Page]:
    yield from _phone_page(browser, stack, 393)


@pytest.fixture
def phone_360(browser: Browser, stack: Stack) -> Iterator[Page]:
    yield from _phone_page(browser, stack, 360)


@pytest.fixture(scope="package")
def browser_with_microphone(playwright: Playwright) -> Iterator[Browser]:
    """Chromium whose microphone is a fake one that beeps, granted without a prompt."""
    launched = playwright.chromium.launch(
        executable_path=require_chromium(), args=[*CHROMIUM_ARGS, *FAKE_MICROPHONE]
    )
    yield launched
    launched.close()


@pytest.fixture
def phone_with_microphone(browser_with_microphone: Browser, stack: Stack) -> Iterator[Page]:
    context = _phone_context(browser_with_microphone, stack, permissions=["microphone"])
    page = context.new_page()
    refused = _watch_policy(page)
    yield page
    context.close()
    assert refused == [], "the page broke its own Content-Security-Policy"


@pytest.fixture
def phone_360_with_microphone(browser_with_microphone: Browser, stack: Stack) -> Iterator[Page]:
    yield from _phone_page(browser_with_microphone, stack, 360, permissions=["microphone"])


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artefact (make clean removes them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
