"""The broker's roles come from the wire contract, live talk included: a speaker's role covers
every topic it listens on and lets it write only its own; the hand-provisioned broker's first
file (the compose example) holds hashes only."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub
from typer.testing import CliRunner

from gateway.devicesec import dynsec
from gateway.devicesec.mosquitto import SpeakerPlace, verify_password
from maeul.cli import app as cli
from wire import contract

CITY, DISTRICT, VILLAGE, ME = "jinju", "d01", "d01-v001", "d01-v001-s1"


def _granted(acls: frozenset[dynsec.Acl], kind: str) -> list[str]:
    return [topic for acltype, topic in acls if acltype == kind]


def test_a_speakers_role_reads_every_topic_it_listens_on_and_writes_only_its_own() -> None:
    acls = dynsec.speaker_acls(CITY, SpeakerPlace(ME, DISTRICT, VILLAGE))
    listens = [
        *contract.speaker_subscriptions(CITY, DISTRICT, VILLAGE, ME),
        *contract.live_subscriptions(CITY, DISTRICT, VILLAGE),
    ]
    for kind in ("subscribePattern", "publishClientReceive"):
        granted = _granted(acls, kind)
        for topic in listens:
            assert any(topic_matches_sub(p, topic) for p in granted), (kind, topic)
        for foreign in (
            contract.command_topic_speaker(CITY, "d01-v001-s2"),
            contract.command_topic_village(CITY, "d01-v002"),
            contract.command_topic_district(CITY, "d02"),
            contract.ack_topic(CITY, ME),
        ):
            assert not any(topic_matches_sub(p, foreign) for p in granted), (kind, foreign)
    assert sorted(_granted(acls, "publishClientSend")) == sorted(
        [contract.ack_topic(CITY, ME), contract.presence_topic(CITY, ME)]
    )
    assert not any("+" in t or "#" in t or "%" in t for _, t in acls), "no wildcard, no pattern"


def test_the_rendered_file_binds_speakers_to_their_client_id_and_denies_by_default() -> None:
    state = dynsec.build_state(
        CITY,
        admins={"broker-admin": "$7$101$" + "A" * 16 + "$" + "B" * 86 + "=="},
        gateways={"gateway": None},
        monitors={},
        speakers=[(SpeakerPlace(ME, DISTRICT, VILLAGE), "$7$101$MDEyMzQ1Njc4OWFi$" + "C" * 88)],
    )
    document = json.loads(dynsec.render_config(state))

    assert document["defaultACLAccess"] == dict.fromkeys(
        ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe"), False
    )
    clients = {c["username"]: c for c in document["clients"]}
    assert set(clients) == {"broker-admin", ME}, "a user whose hash is unknown is left out"
    speaker = clients[ME]
    assert speaker["clientid"] == contract.speaker_client_id(ME)
    assert speaker["roles"] == [{"rolename": dynsec.speaker_role(ME)}]
    assert (speaker["salt"], speaker["iterations"]) == ("MDEyMzQ1Njc4OWFi", 101)
    assert "clientid" not in clients["broker-admin"]
    assert dynsec.to_hash(speaker) == "$7$101$MDEyMzQ1Njc4OWFi$" + "C" * 88


def test_the_template_holds_the_three_accounts_hashed_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = {
        "MQTT_ADMIN_PASSWORD": "a" * 40,
        "MQTT_GATEWAY_PASSWORD": "g" * 40,
        "MQTT_HEALTHCHECK_PASSWORD": "h" * 40,
    }
    for name, value in passwords.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "dynamic-security.json"

    result = CliRunner().invoke(cli, ["broker", "template", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    text = out.read_text()
    assert not any(value in text for value in passwords.values())
    clients = {c["username"]: c for c in json.loads(text)["clients"]}
    assert verify_password("a" * 40, dynsec.to_hash(clients["broker-admin"]))
    assert verify_password("h" * 40, dynsec.to_hash(clients["healthcheck"]))
    assert clients["gateway"]["roles"] == [{"rolename": dynsec.GATEWAY_ROLE}]
    assert clients["healthcheck"]["roles"] == [{"rolename": dynsec.HEALTHCHECK_ROLE}]

    monkeypatch.delenv("MQTT_ADMIN_PASSWORD")
    assert CliRunner().invoke(cli, ["broker", "template", "--out", str(out)]).exit_code == 2
