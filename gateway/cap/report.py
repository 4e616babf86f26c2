"""A broadcast's delivery, village by village, as a CAP 1.2 message linked to its alert.

CAP has no delivery report; its `Ack` "acknowledges receipt and acceptance of the message(s)
identified in references", which is what each village's speakers did (or did not do) with the
alert. So the report is an Ack whose `references` names the broadcast's alert and whose `note`
carries one line per village: ``code outcome played/total name``; the same in JSON beside it.
It is a snapshot at `sent`: asked again later, it is a new message (a new identifier). Its scope
is Restricted: it is for the sender and whoever may read the broadcast, not for the public feed.
"""

from __future__ import annotations

from datetime import UTC, datetime

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
    outcome: VillageOutcome
    speakers: int
    played: int = Field(description="Speakers that played it (on time or late).")


class DeliveryReport(BaseModel):
    identifier: str = Field(description="This report's CAP identifier (an Ack message).")
    references: str = Field(description="The alert it reports on: sender,identifier,sent.")
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
    reference = publish.Reference(alert, broadcast.created_at)
    villages = []
    for village in detail.village_deliveries:
        place = places.get(village.village_id)
        legal = dict(place.codes).get(publish.LEGAL_CODE) if place is not None else None
        villages.append(
            VillageReport(
                village_id=village.village_id,
                code=village.code,
                name=village.name,
                legal_code=legal,
                outcome=village.outcome,
                speakers=len(village.speakers),
                played=sum(1 for s in village.speakers if s.state in _HEARD),
            )
        )
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return DeliveryReport(
        identifier=f"{alert}:report:{stamp}",
        references=publish.references_text(settings, city, [reference]),
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
        f"{v.legal_code or v.code} {v.outcome} {v.played}/{v.speakers} {v.name}"
        for v in report.villages
    ]
    publish.sub(root, "note", "\n".join(lines) or "-")
    publish.sub(root, "references", report.references)
    validate(root)
    return root
