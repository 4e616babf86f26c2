"""What an operator sees of a broadcast: /metrics in Prometheus text (every family with HELP and
TYPE, histograms that grow) and JSON log lines carrying the request's and the broadcast's ids."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.bus import Incoming
from gateway.clock import to_ms
from gateway.logs import JsonLines, configure_logging
from tests.flow.conftest import Stack, proof_of
from tests.media import make_recording
from wire import contract
from wire.contract import AckStatus

ROOT = Path(__file__).resolve().parents[2]
LEGACY_FAMILIES = (
    "maeul_intake_total",
    "maeul_intake_dropped_total",
    "maeul_intake_queue_messages",
    "maeul_intake_queue_senders",
    "maeul_published_total",
    "maeul_publish_failures_total",
    "maeul_publications_abandoned_total",
    "maeul_mqtt_connected",
)
HISTOGRAMS = (
    "maeul_http_request_duration_seconds",
    "maeul_broadcast_all_played_seconds",
    "maeul_ack_intake_lag_seconds",
    "maeul_publish_lag_seconds",
)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=1.0)
    return path.read_bytes()


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The gateway's log lines at INFO, formatted as GATEWAY_LOG_FORMAT=json formats them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _samples(text: str) -> dict[str, float]:
    """Every sample as name{labels} -> value, labels in sorted order."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def _everyone_online(stack: Stack) -> list[str]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    codes = [s["code"] for s in fleet]
    for code in codes:
        presence = contract.Presence(speaker=code, status="online", at_ms=contract.now_ms())
        topic = contract.presence_topic(stack.settings.city_code, code)
        stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_presence(presence)))
    await stack.deliver()
    return codes


async def _broadcast_played_by_all(
    stack: Stack, recording: bytes, codes: list[str], **headers: str
) -> tuple[str, Any]:
    """A broadcast to everyone, published 2 s after it was created, played by every speaker 7 s
    after, each ack recorded 5 s after the speaker sent it, then completed by the sweeper."""
    created = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    broadcast_id: str = created.json()["id"]
    start = stack.clock.now()
    stack.clock.advance(2)
    assert await stack.publish_pending() == 1
    _, payload, _, _ = stack.bus.published[-1]
    command = contract.decode_command(payload)
    for code in codes:
        for status in (AckStatus.RECEIVED, AckStatus.PLAYING, AckStatus.PLAYED):
            ack = contract.Ack(
                command_id=command.id,
                broadcast_id=broadcast_id,
                speaker=code,
                status=status,
                at_ms=to_ms(start + timedelta(seconds=7)),
                **(proof_of(command) if status is AckStatus.PLAYED else {}),
            )
            topic = contract.ack_topic(stack.settings.city_code, code)
            stack.bus.incoming.put_nowait(Incoming(topic, contract.encode_ack(ack)))
    stack.clock.advance(10)
    await stack.deliver()
    await stack.app.state.sweeper.sweep_once()
    return broadcast_id, created


async def test_metrics_parse_and_histograms_grow_with_a_broadcast(
    stack: Stack, recording: bytes
) -> None:
    codes = await _everyone_online(stack)
    before = _samples((await stack.client.get("/metrics")).text)
    await _broadcast_played_by_all(stack, recording, codes)
    response = await stack.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    after = _samples(text)

    # Every family is announced, the old ones under their old names.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for family in families.values():
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"# HELP {exposed} " in text
        assert f"# TYPE {exposed} {family.type}" in text
    for name in LEGACY_FAMILIES:
        assert f"# TYPE {name} " in text, name
    for name in HISTOGRAMS:
        assert families[name].type == "histogram", name

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    post = 'maeul_http_request_duration_seconds_count{method="POST",route="/api/v1/broadcasts"}'
    assert grew(post) == 1
    assert grew("maeul_publish_lag_seconds_count") == 1
    assert grew("maeul_publish_lag_seconds_sum") == 2.0
    assert grew("maeul_ack_intake_lag_seconds_count") == 3 * len(codes)
    assert grew("maeul_ack_intake_lag_seconds_sum") == 5.0 * 3 * len(codes)
    assert grew("maeul_broadcast_all_played_seconds_count") == 1
    assert grew("maeul_broadcast_all_played_seconds_sum") == 7.0
    assert grew('maeul_broadcasts_completed_total{outcome="all_played"}') == 1
    assert grew('maeul_deliveries_total{outcome="played"}') == len(codes)
    assert after['maeul_deliveries_total{outcome="expired"}'] == 0, "every outcome shown"
    assert grew("maeul_published_total") == 1
    assert after['maeul_intake_dropped_total{reason="queue_full"}'] == 0
    # A path that matches no route is one label, whatever was asked.
    await stack.client.get("/no/such/place/12345")
    unmatched = _samples((await stack.client.get("/metrics")).text)
    assert unmatched['maeul_http_request_duration_seconds_count{method="GET",route="unmatched"}']
    assert not any("12345" in name for name in unmatched)


async def test_metrics_tell_the_c_heap_in_use_and_free_and_sqlite_apart(stack: Stack) -> None:
    await stack.client.get("/api/v1/speakers")  # the database has been read
    values = _samples((await stack.client.get("/metrics")).text)
    in_use = values['maeul_c_heap_bytes{state="in_use"}']
    free = values['maeul_c_heap_bytes{state="free"}']
    assert in_use > 1024 * 1024, "the C heap of a running gateway (glibc's own count)"
    assert free >= 0
    assert values["process_resident_memory_bytes"] > in_use, "beside the process's resident total"
    sqlite = values["maeul_sqlite_memory_bytes"]
    if stack.settings.database_url.startswith("sqlite"):
        assert 0 < sqlite < in_use + free, "its database's caches, part of the C heap"
    else:
        assert sqlite >= 0


def test_each_app_counts_only_its_own(stack: Stack) -> None:
    from gateway.app import create_app

    other = create_app(stack.settings)
    assert other.state.metrics.registry is not stack.app.state.metrics.registry


async def test_json_log_lines_carry_request_and_broadcast_ids(
    stack: Stack, recording: bytes, json_lines: io.StringIO
) -> None:
    codes = await _everyone_online(stack)
    broadcast_id, created = await _broadcast_played_by_all(
        stack, recording, codes, **{"X-Request-ID": "office-42"}
    )
    assert created.headers["x-request-id"] == "office-42"
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert lines, "nothing logged"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
    about = [line for line in lines if broadcast_id in line["message"]]
    assert [line["message"].split(":")[0] for line in about] == [
        f"broadcast {broadcast_id} created",
        f"broadcast {broadcast_id} published",
        f"broadcast {broadcast_id} completed (all_played)",
    ]
    assert all(line["broadcast_id"] == broadcast_id for line in about)
    assert all(line["level"] == "INFO" for line in about)
    assert about[0]["request_id"] == "office-42"
    assert f"played {len(codes)}" in about[2]["message"]


async def test_request_ids_are_made_when_missing_or_unusable(stack: Stack) -> None:
    plain = await stack.client.get("/healthz")
    made = plain.headers["x-request-id"]
    assert made
    assert made != (await stack.client.get("/healthz")).headers["x-request-id"]
    odd = await stack.client.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 100})
    assert odd.headers["x-request-id"] != "a b\tc" + "x" * 100
    assert odd.headers["x-request-id"].isalnum()


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="GATEWAY_LOG_FORMAT"):
        configure_logging(log_format="xml")


async def test_dashboard_and_proxy_examples_match_the_metrics(stack: Stack) -> None:
    await stack.client.get("/healthz")  # a labelled histogram shows once it has a sample
    exposed = {
        sample.name
        for family in text_string_to_metric_families((await stack.client.get("/metrics")).text)
        for sample in family.samples
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "maeul.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"maeul_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried - exposed == set(), "the dashboard queries metrics the gateway does not expose"
    for name in HISTOGRAMS:
        assert f"{name}_bucket" in queried, name
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"location = /metrics \{\s*deny all;\s*\}", nginx)


def test_json_format_is_what_the_process_writes() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        configure_logging(log_format="json")  # as `maeul serve` sets it up from the variable
        logging.getLogger("gateway.test").warning("one line, %s", "as JSON")
    finally:
        root.removeHandler(handler)
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["message"] == "one line, as JSON"
    assert (line["level"], line["logger"]) == ("WARNING", "gateway.test")
