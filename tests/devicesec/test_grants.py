"""The broker grants as data: Mosquitto's rendered ACL and a clustered broker's answers agree."""

from __future__ import annotations

import itertools

from gateway.devicesec import grants, mosquitto
from gateway.devicesec.grants import Grant, Place
from gateway.devicesec.mosquitto import SpeakerPlace
from wire import contract

CITY = "jinju"
SPEAKERS = {
    "d01-v001-s1": Place("d01", "d01-v001"),
    "d01-v002-s1": Place("d01", "d01-v002"),
    "d02-v003-s2": Place("d02", "d02-v003"),
}
GATEWAYS, MONITORS = ["gateway", "gw.east"], ["health@check"]


def _acl() -> str:
    return mosquitto.render_acl(
        CITY,
        gateways=GATEWAYS,
        monitors=MONITORS,
        speakers=[SpeakerPlace(code, p.district, p.village) for code, p in SPEAKERS.items()],
    )


def _grants_in_acl(acl: str, username: str) -> set[Grant]:
    """What Mosquitto grants `username` under an acl_file: the patterns with %u made its name,
    and the topic lines of its own user block."""
    found: set[Grant] = set()
    user = None
    for line in acl.splitlines():
        if not line or line.startswith("#"):
            continue
        kind, *rest = line.split(" ")
        if kind == "user":
            user = rest[0]
        elif kind == "pattern":
            found.add(Grant(rest[0], rest[1].replace("%u", username)))  # type: ignore[arg-type]
        elif kind == "topic" and user == username:
            found.add(Grant(rest[0], rest[1]))  # type: ignore[arg-type]
    return found


def _accounts() -> list[tuple[str, grants.Role, Place | None]]:
    return [
        *((name, "gateway", None) for name in GATEWAYS),
        *((name, "monitor", None) for name in MONITORS),
        *((code, "speaker", place) for code, place in SPEAKERS.items()),
    ]


def test_the_rendered_acl_grants_each_account_exactly_its_grants() -> None:
    acl = _acl()
    for username, role, place in _accounts():
        assert _grants_in_acl(acl, username) == set(
            grants.grants_for(CITY, username, role, place)
        ), username


def _topics() -> list[str]:
    codes = [*SPEAKERS, "gateway", "stranger"]
    topics = [
        f"{contract.TOPIC_ROOT}/#",
        f"{contract.TOPIC_ROOT}/{CITY}/cmd/#",
        f"{contract.TOPIC_ROOT}/+/ack/+",
        contract.ack_subscription(),
        "$SYS/#",
        "$SYS/broker/uptime",
        "#",
        contract.command_topic_all(CITY),
        contract.command_topic_all("busan"),
        contract.live_topic_all(CITY),
    ]
    for code in codes:
        topics += [
            contract.command_topic_speaker(CITY, code),
            contract.ack_topic(CITY, code),
            contract.presence_topic(CITY, code),
        ]
    for place in SPEAKERS.values():
        topics += [
            contract.command_topic_district(CITY, place.district),
            contract.command_topic_village(CITY, place.village),
            *contract.live_subscriptions(CITY, place.district, place.village),
        ]
    return topics


def test_both_brokers_decide_every_question_alike() -> None:
    """Each account, action and topic of a table, decided by the grants a clustered broker's
    hooks use and by the grants Mosquitto reads from the rendered file; and every rendered rule
    is used both ways: what it grants is allowed, and the other action is not, unless granted."""
    acl = _acl()
    decided = 0
    for (username, role, place), action, topic in itertools.product(
        _accounts(), ("publish", "subscribe"), _topics()
    ):
        hooks = grants.permits(grants.grants_for(CITY, username, role, place), action, topic)  # type: ignore[arg-type]
        file = grants.permits(list(_grants_in_acl(acl, username)), action, topic)  # type: ignore[arg-type]
        assert hooks == file, (username, action, topic)
        decided += hooks
    assert decided, "the table allows something"

    for username, role, place in _accounts():
        rules = grants.grants_for(CITY, username, role, place)
        for rule in rules:
            reads = grants.permits(rules, "subscribe", rule.topic)
            concrete = "+" not in rule.topic and "#" not in rule.topic
            writes = concrete and grants.permits(rules, "publish", rule.topic)
            assert reads == (rule.access != "write" or _read_elsewhere(rules, rule)), rule
            if concrete:
                assert writes == (rule.access != "read" or _written_elsewhere(rules, rule)), rule


def _read_elsewhere(rules: list[Grant], rule: Grant) -> bool:
    others = [r for r in rules if r != rule and r.access != "write"]
    return grants.permits(others, "subscribe", rule.topic)


def _written_elsewhere(rules: list[Grant], rule: Grant) -> bool:
    others = [r for r in rules if r != rule and r.access != "read"]
    return grants.permits(others, "publish", rule.topic)


def test_topic_filters_are_covered_only_by_as_wide_a_grant() -> None:
    wide = [Grant("readwrite", "maeul/v1/#"), Grant("read", "$SYS/#")]
    narrow = [Grant("read", "maeul/v1/c/cmd/all"), Grant("write", "maeul/v1/c/ack/s1")]
    assert grants.permits(wide, "subscribe", "maeul/v1/+/ack/+")
    assert grants.permits(wide, "subscribe", "$share/maeul-gateway/maeul/v1/+/ack/+")
    assert grants.permits(wide, "subscribe", "maeul/v1")  # 'a/#' covers 'a' itself
    assert not grants.permits(wide, "subscribe", "$share//maeul/v1/#")
    assert not grants.permits(wide, "subscribe", "$share/g")
    assert not grants.permits(wide, "subscribe", "maeul/#")
    assert not grants.permits(wide, "subscribe", "+/v1/c/cmd/all")
    assert not grants.permits(wide, "publish", "maeul/v1/c/cmd/+")  # no wildcard publishes
    assert not grants.permits(wide, "subscribe", "maeul/v1/#/x")
    assert not grants.permits(wide, "subscribe", "maeul/v1/a+b")
    assert not grants.permits(wide, "publish", "$SYS/x")
    assert not grants.permits(wide, "publish", "")
    assert not grants.permits([Grant("read", "#")], "subscribe", "$SYS/x")
    assert not grants.permits([Grant("read", "+/x")], "subscribe", "$SYS/x")
    assert grants.permits(narrow, "subscribe", "maeul/v1/c/cmd/all")
    assert not grants.permits(narrow, "subscribe", "maeul/v1/c/cmd/+")
    assert not grants.permits(narrow, "publish", "maeul/v1/c/cmd/all")
    assert grants.permits(narrow, "publish", "maeul/v1/c/ack/s1")
    assert not grants.permits(narrow, "subscribe", "maeul/v1/c/ack/s1")


def test_client_ids_are_bound_to_their_accounts() -> None:
    allowed = grants.client_id_allowed
    assert allowed("speaker", "s1", "spk-s1", "maeul-gw")
    assert not allowed("speaker", "s1", "spk-s2", "maeul-gw")
    assert not allowed("speaker", "a.b", "spk-a.b", "maeul-gw")  # not a speaker code
    assert allowed("gateway", "gw", "maeul-gw-r1", "maeul-gw")
    assert allowed("gateway", "gw", "tool-1", "maeul-gw")
    assert not allowed("gateway", "gw", "spk-s1", "maeul-gw")
    assert not allowed("gateway", "gw", "", "maeul-gw")
    assert allowed("monitor", "m", "m", "maeul-gw")
    assert not allowed("monitor", "m", "probe", "maeul-gw")  # a monitor's id is its own
    assert not allowed("monitor", "m", "maeul-gw-r1", "maeul-gw")
    assert not allowed("monitor", "m", "spk-s1", "maeul-gw")
