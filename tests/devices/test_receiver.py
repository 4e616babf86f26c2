"""An indoor receiver's household settings on the speaker core, on an injected clock: a notice
arriving in quiet hours is held (acked ``received``/``held_quiet_hours``) and plays when they end
unless it expires or is cancelled first; a disaster alert plays at once, at full volume; the
volume scales the output and the level the ``played`` ack reports. A simulated receiver does the
same against a real broker, and an enrolled one is configured to ask for its household's
settings."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from devices.actions import Ack, Action, Play
from devices.agent_config import load_config
from devices.enroll import Redeemed, render_config
from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker
from devices.sound import measure_level_dbfs
from devices.speaker import SpeakerCore
from devices.volume import scale_pcm, scaled_level
from tests.devices.commands import NOW, audio, cancel_of, command, opus_clip, resend
from tests.devices.observer import Observer
from tests.devices.test_speaker import IDENTITY, Clock, acks, payload, play_cmd, plays
from wire import contract
from wire.contract import Category

HOUR_MS = 3_600_000
# NOW is 17:00 in Seoul: these quiet hours hold it, and end an hour later.
QUIET = contract.QuietHours(start="16:00", end="18:00", timezone="Asia/Seoul")
LEVEL = -12.5


def receiver(
    *, volume: int | None = 50, hold: bool = True, quiet: contract.QuietHours | None = QUIET
) -> tuple[SpeakerCore, Clock]:
    clock = Clock()
    settings = contract.ReceiverSettings(volume=volume, hold_quiet=hold, quiet_hours=quiet)
    return SpeakerCore(IDENTITY, codecs=("opus",), clock=clock, receiver=settings), clock


def notice(**fields: object) -> contract.Command:
    fields.setdefault("ttl_ms", 3 * HOUR_MS)
    return play_cmd(category=Category.VILLAGE_NOTICE, priority=10, **fields)


def disaster(**fields: object) -> contract.Command:
    return play_cmd(category=Category.DISASTER, priority=40, **fields)


def arrive(core: SpeakerCore, cmd: contract.Command) -> list[Action]:
    return [
        *core.on_command(payload(cmd)),
        *core.on_prepared(cmd.id, duration_ms=500, level_dbfs=LEVEL),
    ]


def played_level(core: SpeakerCore, cmd: contract.Command) -> float | None:
    [ack] = [a for a in core.on_play_finished(cmd.id, played_ms=500) if isinstance(a, Ack)]
    assert ack.message.status is contract.AckStatus.PLAYED
    return ack.message.level_dbfs


def test_a_notice_in_quiet_hours_is_held_until_they_end_then_played_at_the_households_volume() -> (
    None
):
    core, clock = receiver()
    cmd = notice()
    actions = arrive(core, cmd)
    assert acks(actions) == [("received", "held_quiet_hours")]
    assert plays(actions) == []
    assert core.held == (cmd.id,)

    clock.ms = NOW + HOUR_MS - 1  # a minute before the end: still held
    assert core.on_tick() == []
    clock.ms = NOW + HOUR_MS
    released = core.on_tick()
    assert acks(released) == [("playing", None)]
    [play] = [a for a in released if isinstance(a, Play)]
    assert play.volume == 50
    assert core.held == ()
    assert (
        played_level(core, cmd) == scaled_level(LEVEL, 50) == pytest.approx(LEVEL - 6.02, abs=0.01)
    )


def test_a_disaster_plays_at_once_at_full_volume_while_a_notice_stays_held() -> None:
    core, _ = receiver(volume=20)
    held = notice()
    arrive(core, held)
    alert = disaster()
    actions = arrive(core, alert)
    assert acks(actions) == [("received", None), ("playing", None)]
    [play] = [a for a in actions if isinstance(a, Play)]
    assert (play.command.id, play.volume) == (alert.id, 100)
    assert played_level(core, alert) == LEVEL
    assert core.held == (held.id,)  # the alert ending does not release the notice
    assert core.playing is None


def test_a_held_notice_that_expires_or_is_cancelled_before_the_end_never_plays() -> None:
    core, clock = receiver()
    short = notice(ttl_ms=HOUR_MS // 2)
    cancelled = notice()
    arrive(core, short)
    arrive(core, cancelled)
    dropped = core.on_command(payload(cancel_of(cancelled, at_ms=NOW + 1)))
    assert ("failed", "cancelled") in acks(dropped)
    clock.ms = NOW + HOUR_MS
    assert acks(core.on_tick()) == [("failed", "expired")]
    assert core.queued == ()
    assert core.playing is None


def test_a_copy_of_a_held_notice_is_answered_held_again() -> None:
    core, clock = receiver()
    cmd = notice()
    arrive(core, cmd)
    clock.ms = NOW + 60_000
    again = core.on_command(payload(resend(cmd, at_ms=clock.ms)))
    assert acks(again) == [("received", "held_quiet_hours")]
    assert core.held == (cmd.id,)


def test_a_held_notice_does_not_interrupt_what_plays() -> None:
    core, _ = receiver(hold=True)
    playing = play_cmd(category=Category.VILLAGE_NOTICE, priority=5, ttl_ms=3 * HOUR_MS)
    # A low-priority notice that arrived before quiet hours plays on (only arrivals are held).
    core.receiver = None
    arrive(core, playing)
    core.receiver = contract.ReceiverSettings(volume=None, hold_quiet=True, quiet_hours=QUIET)
    louder = notice()
    assert acks(arrive(core, louder)) == [("received", "held_quiet_hours")]
    assert core.playing == playing.id


@pytest.mark.parametrize(
    ("hold", "quiet", "at_ms"),
    [
        (False, QUIET, NOW),  # the household does not hold
        (True, None, NOW),  # the district has no quiet hours
        (True, QUIET, NOW + HOUR_MS),  # 18:00: over
    ],
)
def test_a_notice_plays_at_once_unless_held(
    hold: bool, quiet: contract.QuietHours | None, at_ms: int
) -> None:
    core, clock = receiver(volume=None, hold=hold, quiet=quiet)
    clock.ms = at_ms
    cmd = notice(at_ms=at_ms)
    actions = arrive(core, cmd)
    assert acks(actions) == [("received", None), ("playing", None)]
    assert played_level(core, cmd) == LEVEL  # no volume set: its own level


def test_at_volume_zero_a_notice_is_muted_but_a_disaster_is_heard() -> None:
    core, _ = receiver(volume=0, hold=False)
    assert acks(arrive(core, notice())) == [("failed", "muted")]
    alert = disaster()
    assert plays(arrive(core, alert)) == [alert.id]
    assert core.counters.muted == 1


def test_quiet_hours_past_midnight_end_the_next_morning() -> None:
    night = contract.QuietHours(start="21:00", end="07:00", timezone="Asia/Seoul")
    at = int(datetime(2026, 12, 6, 14, 30, tzinfo=UTC).timestamp() * 1000)  # 23:30 in Seoul
    ends = int(datetime(2026, 12, 6, 22, 0, tzinfo=UTC).timestamp() * 1000)  # 07:00 next day
    assert night.quiet_until_ms(at) == ends
    assert night.quiet_until_ms(ends) is None


def test_the_scaled_output_has_the_level_the_ack_reports() -> None:
    t = np.arange(16000) / 16000
    samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    level = measure_level_dbfs(samples)
    for volume in (100, 70, 25, 1):
        played = measure_level_dbfs(scale_pcm(samples, volume))
        assert played == pytest.approx(scaled_level(level, volume), abs=0.05)
    assert measure_level_dbfs(scale_pcm(samples, 0)) == scaled_level(level, 0) == -200.0


def sent_now(city: str, clip: bytes, category: Category) -> contract.Command:
    return command(
        city=city,
        at_ms=contract.now_ms(),
        refs=(audio(clip),),
        category=category,
        priority=contract.DEFAULT_PRIORITY[category],
    )


async def test_a_simulated_receiver_holds_a_notice_and_plays_a_disaster_at_once(
    mqtt_url: str,
) -> None:
    city = f"c{secrets.token_hex(3)}"
    now = datetime.now(UTC)
    # Quiet hours around this very moment, in the city's time (UTC here).
    quiet = contract.QuietHours(
        start=f"{now - timedelta(hours=1):%H:%M}",
        end=f"{now + timedelta(hours=1):%H:%M}",
        timezone="UTC",
    )
    home = contract.SpeakerIdentity(city=city, district="d1", village="v1", speaker=f"{city}-h1")
    horn = contract.SpeakerIdentity(city=city, district="d1", village="v1", speaker=f"{city}-s1")
    settings = contract.ReceiverSettings(volume=30, hold_quiet=True, quiet_hours=quiet)
    fleet = Fleet(FleetConfig(mqtt_url=mqtt_url, speed=20, session_expiry_s=60))
    clip = opus_clip(0.5)
    async with Observer(mqtt_url, city) as observer:
        await fleet.start(
            [SimSpeaker(home, kind="household_receiver", receiver=settings), SimSpeaker(horn)]
        )
        try:
            routine = sent_now(city, clip, Category.VILLAGE_NOTICE)
            await observer.publish(contract.command_topic_all(city), routine)
            # The loudspeaker plays it; the receiver says it holds it.
            await observer.until(
                lambda: (
                    {(a.speaker, a.status.value) for a in observer.of(routine.id)}
                    >= {(horn.speaker, "played"), (home.speaker, "received")}
                )
            )
            alert = sent_now(city, clip, Category.DISASTER)
            await observer.publish(contract.command_topic_all(city), alert)
            await observer.until(
                lambda: (
                    (home.speaker, "played") in observer.counts(alert.id)
                    and (horn.speaker, "played") in observer.counts(alert.id)
                )
            )
        finally:
            await fleet.stop()
    held = [a for a in observer.of(routine.id) if a.speaker == home.speaker]
    assert [(a.status.value, a.reason) for a in held] == [("received", "held_quiet_hours")]
    assert fleet.speaker(home.speaker).core.held == (routine.id,)
    levels = {a.speaker: a.level_dbfs for a in observer.of(alert.id) if a.status.value == "played"}
    # A disaster ignores the household's volume: as loud as the loudspeaker's.
    assert levels[home.speaker] == levels[horn.speaker]


def test_an_enrolled_receiver_is_configured_to_ask_for_its_households_settings(
    tmp_path: Path,
) -> None:
    provisioning = contract.provisioning_for(
        IDENTITY,
        broker_url="mqtts://broker.example:8883",
        gateway_url="https://gateway.example",
        session_expiry_s=3600,
        keepalive_s=30,
        heartbeat_s=30.0,
        keyring=contract.KeyRing(city=IDENTITY.city, keys=()),
        receiver=contract.ReceiverSettings(volume=60),
    )
    redeemed = Redeemed(
        speaker_id=1, password="pw", receipt_key_enrolled=True, provisioning=provisioning
    )
    path = tmp_path / "speaker.toml"
    path.write_text(render_config(redeemed, state_dir=tmp_path))
    assert load_config(path, {}).speaker.kind == "household_receiver"
    loudspeaker = redeemed.model_copy(
        update={"provisioning": provisioning.model_copy(update={"receiver": None})}
    )
    path.write_text(render_config(loudspeaker, state_dir=tmp_path))
    assert load_config(path, {}).speaker.kind == "loudspeaker"
