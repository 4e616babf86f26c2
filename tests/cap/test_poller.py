"""The CAP feed poller against a local HTTP server serving an Atom feed of CAP alerts: new
entries are taken in as their sender, once, by one replica; a hostile entry is refused and
audited, and never fetched again."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

import pytest

from gateway.auth import Role
from gateway.cap.poller import CapPoller
from gateway.settings import CapFeed
from tests.cap import documents as cap
from tests.cap.test_ingest import cap_sender, circle_around, ids, migrated_database_url, villages
from tests.cap.test_refusals import XXE
from tests.flow.conftest import Stack, stack

__all__ = ["migrated_database_url", "stack"]  # the fixtures, shared


class Site:
    """Documents by path, and how often each was asked for."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.url = ""


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits[self.path] += 1
            body = served.pages.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


def atom(entries: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>기상청 특보</title><id>urn:kma:feed</id>"
        f"<updated>{cap.SENT}</updated>" + "".join(entries) + "</feed>"
    ).encode()


def entry(entry_id: str, *, inline: bytes | None = None, href: str | None = None) -> str:
    head = (
        f"<entry><id>{entry_id}</id><title>특보</title><updated>2026-01-01T08:58:00+09:00</updated>"
    )
    if inline is not None:
        body = inline.decode().split("?>", 1)[1]  # the alert element, without its declaration
        return f'{head}<content type="application/cap+xml">{body}</content></entry>'
    link = f'<link rel="alternate" type="application/cap+xml" href="{escape(href or "")}"/>'
    return f"{head}{link}</entry>"


async def test_feeds_are_polled_once_by_one_replica_and_entries_taken_once(
    stack: Stack, site: Site
) -> None:
    places = await villages(stack)
    await cap_sender(stack, cap.KMA, Role.SAFETY_OFFICER)
    garam = [v for c, v in places.items() if c.startswith("d01-")]
    quake = cap.earthquake(
        cap.area("진앙", circles=[circle_around(places, "d01-v003")]), "KMA-EQ-feed"
    )
    site.pages["/alerts/quake.xml"] = quake
    site.pages["/alerts/bad.xml"] = XXE
    site.pages["/feed.atom"] = atom(
        [
            entry("urn:kma:1", inline=cap.thunderstorm(cap.box(garam), "KMA-TS-feed")),
            entry("urn:kma:2", href="/alerts/quake.xml"),
            entry("urn:kma:3", href="/alerts/bad.xml"),
        ]
    )
    feed_url = f"{site.url}/feed.atom"
    stack.settings.cap_feeds = [CapFeed(url=feed_url, sender=cap.KMA)]
    state = stack.app.state
    one = state.cap_poller
    other = CapPoller(state.sessions, state.runtime, city_code=stack.settings.city_code)

    assert await one.poll_due() == {feed_url: 3}
    assert await other.poll_due() == {}, "the feed's turn is taken"
    made = (await stack.client.get("/api/v1/broadcasts")).json()["items"]
    by_id = {b["target"]["cap"]["identifier"]: b for b in made}
    assert set(by_id) == {"KMA-TS-feed", "KMA-EQ-feed"}
    assert by_id["KMA-TS-feed"]["target"]["village_ids"] == ids(
        places, "d01-v001", "d01-v002", "d01-v003"
    )
    assert by_id["KMA-EQ-feed"]["target"]["village_ids"] == ids(places, "d01-v003")
    rows = (
        await stack.client.get("/api/v1/audit-events", params={"action": "poll_cap_feed"})
    ).json()["items"]
    assert sorted(r["outcome"] for r in rows) == ["ok", "ok", "rejected"]
    [refused] = [r for r in rows if r["outcome"] == "rejected"]
    assert refused["reason"] == "cap_dtd_forbidden"
    assert f"cap_bytes={len(XXE)}" in refused["target"]

    # The next turn, on the other replica: nothing new, nothing fetched twice.
    stack.clock.advance(stack.settings.cap_poll_s)
    assert await other.poll_due() == {feed_url: 0}
    assert (await stack.client.get("/api/v1/broadcasts")).json()["total"] == 2
    assert site.hits["/feed.atom"] == 2
    assert site.hits["/alerts/bad.xml"] == site.hits["/alerts/quake.xml"] == 1

    # A feed lists its newest first: a Cancel above the alert it cancels, both new this turn.
    # The alert is taken in first, then cancelled: it never plays.
    call_off = cap.alert(
        "KMA-FL-cancel",
        sender=cap.KMA,
        msg_type="Cancel",
        sent="2026-01-01T08:59:30+09:00",
        references=[f"{cap.KMA},KMA-FL,{cap.SENT}"],
    )
    site.pages["/feed.atom"] = atom(
        [
            entry("urn:kma:5", inline=call_off),
            entry("urn:kma:4", inline=cap.thunderstorm(cap.box(garam), "KMA-FL")),
        ]
    )
    stack.clock.advance(stack.settings.cap_poll_s)
    assert await one.poll_due() == {feed_url: 2}
    made = (await stack.client.get("/api/v1/broadcasts")).json()["items"]
    [flood] = [b for b in made if b["target"]["cap"]["identifier"] == "KMA-FL"]
    assert flood["state"] == "cancelled"
