"""Tables for the city, its districts and its villages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime


class City(Base):
    __tablename__ = "cities"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class District(Base):
    __tablename__ = "districts"
    __table_args__ = (UniqueConstraint("city_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Where it is (WGS84 degrees), its national codes (10-digit 법정동 and 행정동 codes) and
    # its boundary (a GeoJSON Polygon or MultiPolygon), each when known.
    lat: Mapped[float | None] = mapped_column(Float, default=None)
    lon: Mapped[float | None] = mapped_column(Float, default=None)
    legal_code: Mapped[str | None] = mapped_column(String(10), default=None)
    admin_code: Mapped[str | None] = mapped_column(String(10), default=None)
    boundary: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)


class Village(Base):
    __tablename__ = "villages"
    __table_args__ = (UniqueConstraint("city_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    district_id: Mapped[int] = mapped_column(
        ForeignKey("districts.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Where it is (WGS84 degrees), its national codes (10-digit 법정동 and 행정동 codes) and
    # its boundary (a GeoJSON Polygon or MultiPolygon), each when known.
    lat: Mapped[float | None] = mapped_column(Float, default=None)
    lon: Mapped[float | None] = mapped_column(Float, default=None)
    legal_code: Mapped[str | None] = mapped_column(String(10), default=None)
    admin_code: Mapped[str | None] = mapped_column(String(10), default=None)
    boundary: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    # The languages its speakers read after Korean (BCP 47 primary tags, in order); empty: the
    # city's (GATEWAY_SPOKEN_LANGUAGES).
    languages: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
