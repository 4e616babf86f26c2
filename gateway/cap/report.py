"""A broadcast's delivery, village by village, as a CAP 1.2 message linked to its alert.

CAP has no delivery report; its `Ack` "acknowledges receipt and acceptance of the message(s)
identified in references", which is what each village's speakers did (or did not do) with the
alert. So the report is an Ack whose `references` names the broadcast's alert and whose `note`
carries one line per village: ``code outcome played/total name`` (code: the 법정동 code, else the
행정동 code, else Maeul's own); the same in JSON beside it. For a broadcast made from a CAP alert,
`references` names that alert too, as its sender did.
It is a snapshot at `sent`: asked again later, it is a new message (a new identifier). Its scope
is Restricted: it is for the sender and whoever may read the broadcast, not for the public feed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from lxml import etree
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts import reading
from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.schemas import BroadcastDetail, VillageOutcome
from gateway.cap import publish
from gateway.cap.xsd import validate
from gateway.places.models import City
from gateway.settings import Settings

RESTRICTION = "발신 기관과 이 방송을 볼 수 있는 사람만 / the sender and those who may read it"
_HEARD = ("played", "played_late")


class VillageReport(BaseModel):
    village_id: int
    code: str
    name: str
    legal_code: str | None
    admin_code: str | None = None
    outcome: VillageOutcome | Literal["cancelled"] = Field(
        description="As on the board; `cancelled` where the broadcast was cancelled (stopped by a "
        "cancel or replaced by an update) before any speaker of the village played it."
    )
    speakers: int
    played: int = Field(description="Speakers that played it (on time or late).")


class DeliveryReport(BaseModel):
    identifier: str = Field(description="This report's CAP identifier (an Ack message).")
    references: str = Field(
        description="The alert it reports on, sender,identifier,sent: the city's own; for a "
        "broadcast made from a CAP alert, also that alert as its sender named it."
    )
    alert: str = Field(description="The broadcast's CAP identifier.")
    sent: datetime
    villages: list[VillageReport]


async def delivery_report(
    session: AsyncSession, settings: Settings, city: City, broadcast: Broadcast, now: datetime
) -> DeliveryReport:
    detail = await reading.summarize(session, broadcast, detail=True)
    assert isinstance(detail, BroadcastDetail)
    reached = reading.reached_villages(broadcast)
    places = {p.id: p for p in await publish.places_of(session, reached)}
    alert = publish.identifier_of(city, broadcast.id)
    references = [publish.Reference(alert, broadcast.created_at)]
    theirs = publish.taken_in(broadcast)
    if theirs is not None:
        references.append(theirs)
    villages = []
    for village in detail.village_deliveries:
        place = places.get(village.village_id)
        codes = dict(place.codes) if place is not None else {}
        played = sum(1 for s in village.speakers if s.state in _HEARD)
        cancelled = broadcast.cancelled_at is not None and played == 0
        villages.append(
            VillageReport(
                village_id=village.village_id,
                code=village.code,
                name=village.name,
                legal_code=codes.get(publish.LEGAL_CODE),
                admin_code=codes.get(publish.ADMIN_CODE),
                outcome="cancelled" if cancelled else village.outcome,
                speakers=len(village.speakers),
                played=played,
            )
        )
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return DeliveryReport(
        identifier=f"{alert}:report:{stamp}",
        references=publish.references_text(settings, city, references),
        alert=alert,
        sent=now.replace(microsecond=0),
        villages=villages,
    )


def report_document(
    settings: Settings, city: City, broadcast: Broadcast, report: DeliveryReport
) -> etree._Element:
    root = publish.header(
        settings,
        city,
        identifier=report.identifier,
        sent=report.sent,
        mode=broadcast.mode,
        msg_type="Ack",
        scope="Restricted",
    )
    publish.sub(root, "restriction", RESTRICTION)
    lines = [
        f"{v.legal_code or v.admin_code or v.code} {v.outcome} {v.played}/{v.speakers} {v.name}"
        for v in report.villages
    ]
    publish.sub(root, "note", "\n".join(lines) or "-")
    publish.sub(root, "references", report.references)
    validate(root)
    return root
