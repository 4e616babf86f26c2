"""The broker's password file and ACL as text: Mosquitto's formats, each speaker's own topics."""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.devicesec import mosquitto
from gateway.devicesec.mosquitto import SpeakerPlace
from wire import contract


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_hashes_are_mosquittos_pbkdf2_and_verify() -> None:
    salt = b"0123456789ab"
    hashed = mosquitto.hash_password("s3cret", salt=salt)

    _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
    assert (kind, iterations) == ("7", "101")
    assert base64.b64decode(salt_b64) == salt
    assert base64.b64decode(digest_b64) == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)
    assert mosquitto.verify_password("s3cret", hashed)
    assert not mosquitto.verify_password("s3cret ", hashed)
    assert not mosquitto.verify_password("s3cret", "$7$101$not-a-hash")


def test_secrets_are_long_and_fresh() -> None:
    first, second = mosquitto.new_secret(), mosquitto.new_secret()
    assert first != second
    assert len(first) >= 43
    assert not set("@:/%") & set(first), "it fits an mqtt:// URL as it is"


def test_password_file_holds_hashes_only() -> None:
    hashed = mosquitto.hash_password("pw")
    text = mosquitto.render_passwd({"gateway": hashed, "d01-v001-s1": hashed})

    assert text == f"gateway:{hashed}\nd01-v001-s1:{hashed}\n"
    assert "pw\n" not in text
    with pytest.raises(ValueError, match="format"):
        mosquitto.render_passwd({"gateway": "plain-password"})
    for name in ("", "a:b", "a\nb", "a b", "a/b", "+", "#"):
        with pytest.raises(ValueError, match="user name"):
            mosquitto.render_passwd({name: hashed})


def test_each_speaker_reads_only_its_own_command_topics() -> None:
    acl = mosquitto.render_acl(
        "jinju",
        gateways=["gateway"],
        monitors=["healthcheck"],
        speakers=[
            SpeakerPlace("d01-v001-s1", "d01", "d01-v001"),
            SpeakerPlace("d02-v003-s2", "d02", "d02-v003"),
        ],
    )

    assert _directives(acl) == [
        "pattern read maeul/v1/jinju/cmd/speaker/%u",
        "pattern write maeul/v1/jinju/ack/%u",
        "pattern write maeul/v1/jinju/presence/%u",
        "user gateway",
        "topic readwrite maeul/v1/#",
        "user healthcheck",
        "topic read $SYS/#",
        "user d01-v001-s1",
        f"topic read {contract.command_topic_all('jinju')}",
        f"topic read {contract.command_topic_district('jinju', 'd01')}",
        f"topic read {contract.command_topic_village('jinju', 'd01-v001')}",
        *(f"topic read {t}" for t in contract.live_subscriptions("jinju", "d01", "d01-v001")),
        "user d02-v003-s2",
        f"topic read {contract.command_topic_all('jinju')}",
        f"topic read {contract.command_topic_district('jinju', 'd02')}",
        f"topic read {contract.command_topic_village('jinju', 'd02-v003')}",
        *(f"topic read {t}" for t in contract.live_subscriptions("jinju", "d02", "d02-v003")),
    ]
    # Nothing grants a wildcard read of commands; apart from the gateway's, the only writes are
    # a user's own acks and presence.
    readable = [line.split()[-1] for line in _directives(acl) if " read " in f" {line} "]
    assert not any("+" in topic for topic in readable)
    writes = [line for line in _directives(acl) if "write" in line.split()[:2]]
    assert writes == [
        "pattern write maeul/v1/jinju/ack/%u",
        "pattern write maeul/v1/jinju/presence/%u",
    ]


def test_acl_refuses_names_that_would_break_it() -> None:
    with pytest.raises(ValueError, match="user name"):
        mosquitto.render_acl("jinju", gateways=["a b"], monitors=[], speakers=[])
    with pytest.raises(contract.WireError):
        mosquitto.render_acl(
            "jinju", gateways=[], monitors=[], speakers=[SpeakerPlace("s1", "d/1", "v1")]
        )
