"""Reading a CAP document's languages: what a sender left out or mislabelled is not passed on
as another language's text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.cap.reading import CapRefused, read_alert
from gateway.cap.xsd import parse
from tests.cap import documents as cap

WHERE = cap.area("가람면", circles=["35.1,128.1 1"])


def _info(language: str, headline: str, description: str) -> str:
    return cap.rain(language, headline, description, WHERE)


def test_an_unlabelled_korean_info_is_korean() -> None:
    unlabelled = _info("", "호우 경보", "많은 비가 옵니다.").replace("<language></language>", "")
    english = _info("", "Heavy rain", "Rain tonight.").replace("<language></language>", "")
    alert = read_alert(parse(cap.alert("L-1", sender=cap.KMA, infos=[english, unlabelled])))
    assert [i.language for i in alert.infos] == ["en-US", "ko-KR"]
    assert alert.spoken_info() == alert.infos[1]


def test_an_info_with_nothing_to_say_gives_no_text() -> None:
    silent = _info("vi-VN", "", "").replace("<headline></headline>", "")
    silent = silent.replace("<description></description>", "")
    alert = read_alert(
        parse(cap.alert("L-2", sender=cap.KMA, infos=[_info("ko-KR", "호우", "비"), silent]))
    )
    assert alert.texts() == {"ko-KR": "호우\n비"}


def test_midnight_written_as_24_00_is_the_next_day_and_an_unplaceable_time_is_refused() -> None:
    korean = _info("ko-KR", "호우", "비")
    alert = read_alert(
        parse(cap.alert("T-1", sender=cap.KMA, sent="2026-01-01T24:00:00+09:00", infos=[korean]))
    )
    assert alert.sent == datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=9)))
    with pytest.raises(CapRefused) as refused:
        read_alert(
            parse(
                cap.alert("T-2", sender=cap.KMA, sent="0001-01-01T00:00:00+14:00", infos=[korean])
            )
        )
    assert (refused.value.code, refused.value.path) == ("cap_time_invalid", "/cap:alert/cap:sent")
