"""CAP documents are parsed safely and checked against the OASIS CAP 1.2 schema."""

from __future__ import annotations

import pytest

from gateway.cap.xsd import CapProblem, parse

VALID = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KR-GN-2026-0001</identifier>
  <sender>alerts@gyeongnam.example</sender>
  <sent>2026-12-06T10:00:00+09:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>ko-KR</language>
    <category>Fire</category>
    <event>산불</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <area><areaDesc>진주시 명석면</areaDesc><circle>35.22,128.05 3</circle></area>
  </info>
</alert>""".encode()


def test_a_valid_alert_parses() -> None:
    root = parse(VALID)
    assert root.findtext("{urn:oasis:names:tc:emergency:cap:1.2}identifier") == "KR-GN-2026-0001"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&lol2;</alert>',
            "dtd_forbidden",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier>'
            b"</alert>",
            "dtd_forbidden",
        ),
        (b"not xml at all", "not_xml"),
        (VALID.replace(b"cap:1.2", b"cap:1.1"), "wrong_namespace"),
        (VALID.replace(b"<status>Actual", b"<status>Nope"), "schema_invalid"),
        (VALID.replace(b"<scope>Public</scope>", b""), "schema_invalid"),
        (b"<a>" + b"x" * (600 * 1024) + b"</a>", "too_large"),
    ],
)
def test_hostile_and_wrong_documents_are_refused_with_a_reason(
    document: bytes, reason: str
) -> None:
    with pytest.raises(CapProblem) as refused:
        parse(document)
    assert refused.value.reason == reason


def test_a_schema_error_names_where_it_is() -> None:
    with pytest.raises(CapProblem) as refused:
        parse(VALID.replace(b"<status>Actual", b"<status>Nope"))
    assert refused.value.path
    assert "status" in refused.value.detail
