"""Reading a CAP document's languages: what a sender left out or mislabelled is not passed on
as another language's text."""

from __future__ import annotations

from gateway.cap.reading import read_alert
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
