"""The compose example's broker ACL is generated from the wire contract, live talk included."""

from __future__ import annotations

from pathlib import Path

from paho.mqtt.client import topic_matches_sub

from gateway.devicesec.mosquitto import render_template_acl
from maeul.cli import TEMPLATE_GATEWAYS, TEMPLATE_MONITORS
from wire import contract

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl"


def _patterns(kind: str, user: str) -> list[str]:
    return [
        line.split(" ", 2)[2].replace("%u", user)
        for line in ACL.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"pattern {kind} ")
    ]


def test_the_committed_acl_is_what_the_contract_renders() -> None:
    rendered = render_template_acl(gateways=TEMPLATE_GATEWAYS, monitors=TEMPLATE_MONITORS)
    assert ACL.read_text(encoding="utf-8") == rendered, (
        "deploy/mosquitto/acl is stale: run `maeul broker template --out deploy/mosquitto/acl`"
    )


def test_a_speaker_reads_every_topic_it_listens_on_and_writes_only_its_own() -> None:
    city, district, village, me = "jinju", "d01", "v001", "spk-0001"
    reads = _patterns("read", me)
    listens = [
        contract.command_topic_all(city),
        contract.command_topic_district(city, district),
        contract.command_topic_village(city, village),
        contract.command_topic_speaker(city, me),
        *contract.live_subscriptions(city, district, village),
    ]
    for topic in listens:
        assert any(topic_matches_sub(p, topic) for p in reads), topic
    assert not any(
        topic_matches_sub(p, contract.command_topic_speaker(city, "spk-0002")) for p in reads
    )
    writes = _patterns("write", me)
    assert any(topic_matches_sub(p, contract.ack_topic(city, me)) for p in writes)
    assert not any(topic_matches_sub(p, contract.ack_topic(city, "spk-0002")) for p in writes)
    assert not any(topic_matches_sub(p, contract.live_topic_all(city)) for p in writes)
