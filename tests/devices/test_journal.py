"""The agent's SQLite journal: it survives reopening and a crash, and drives recovery."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from devices.actions import Ack, Play
from devices.journal import SqliteJournal
from devices.speaker import SpeakerCore
from devices.states import Proof
from tests.devices.commands import NOW, audio, command, resend
from wire import contract

IDENTITY = contract.SpeakerIdentity(city="testcity", district="d1", village="v1", speaker="s1")
CLIP = b"OggS" + bytes(range(200))


def core_over(journal: SqliteJournal) -> SpeakerCore:
    return SpeakerCore(IDENTITY, codecs=("opus",), journal=journal, clock=lambda: NOW)


def test_entries_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = SqliteJournal(path)
    proof = Proof("a" * 64, 1234, -17.5)
    journal.record("c1", "b1", "received", expires_at_ms=NOW + 1, payload=b"{}")
    journal.record("c1", "b1", "playing")
    journal.record("c1", "b1", "played", proof=proof)
    journal.record("c2", "b2", "rejected", reason="out_of_scope", expires_at_ms=NOW)
    journal.close()

    reopened = SqliteJournal(path)
    entry = reopened.lookup("c1")
    assert entry is not None
    assert (entry.state, entry.broadcast_id, entry.proof) == ("played", "b1", proof)
    assert entry.expires_at_ms == NOW + 1  # kept from the first record
    assert entry.payload is None  # dropped once the command started
    assert reopened.state_of("c2") == "rejected"
    assert reopened.lookup("c2").reason == "out_of_scope"  # type: ignore[union-attr]
    assert reopened.state_of("nope") is None
    reopened.close()


def test_unfinished_in_arrival_order_and_pruning(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.sqlite")
    journal.record("c1", "b", "received", expires_at_ms=NOW, payload=b"one")
    journal.record("c2", "b", "received", expires_at_ms=NOW, payload=b"two")
    journal.record("c3", "b", "played", expires_at_ms=NOW)
    journal.record("c1", "b", "playing")  # an update keeps c1 first
    assert [(e.command_id, e.state, e.payload) for e in journal.unfinished()] == [
        ("c1", "playing", None),
        ("c2", "received", b"two"),
    ]
    assert journal.prune(NOW + 1) == 1  # only finished entries go
    assert journal.state_of("c3") is None
    assert journal.state_of("c2") == "received"
    journal.close()


def test_playing_then_crash_is_interrupted_and_never_replayed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    cmd = command(refs=(audio(CLIP),))
    payload = contract.encode_command(cmd)
    # A separate process takes the command to "playing" and dies without closing anything.
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from devices.journal import SqliteJournal
        from devices.speaker import SpeakerCore
        from wire import contract
        identity = contract.SpeakerIdentity.model_validate_json({IDENTITY.model_dump_json()!r})
        core = SpeakerCore(identity, codecs=("opus",), journal=SqliteJournal(Path(sys.argv[1])),
                           clock=lambda: {NOW})
        core.on_command(sys.stdin.buffer.read())
        actions = core.on_prepared({cmd.id!r}, duration_ms=500, level_dbfs=-9.0)
        assert any(type(a).__name__ == "Play" for a in actions)
        os._exit(9)  # power cut while the horn plays
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        input=payload,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 9, done.stderr.decode()

    journal = SqliteJournal(path)
    assert journal.state_of(cmd.id) == "playing"
    core = core_over(journal)
    recovered = [a.message for a in core.recover() if isinstance(a, Ack)]
    assert [(a.command_id, a.status, a.reason) for a in recovered] == [
        (cmd.id, "failed", "interrupted")
    ]
    replay = core.on_command(payload)
    assert not [a for a in replay if isinstance(a, Play)]
    assert [(a.message.status, a.message.reason) for a in replay if isinstance(a, Ack)] == [
        ("failed", "interrupted")
    ]
    journal.close()


def test_a_waiting_command_survives_a_restart_and_plays_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    cmd = command(refs=(audio(CLIP),))
    first = SqliteJournal(path)
    core_over(first).on_command(contract.encode_command(cmd))  # received, then the box reboots
    first.close()

    journal = SqliteJournal(path)
    core = core_over(journal)
    actions = core.recover()
    assert [a.message.status for a in actions if isinstance(a, Ack)] == ["received"]
    started = core.on_prepared(cmd.id, duration_ms=500, level_dbfs=-9.0)
    assert [a.command.id for a in started if isinstance(a, Play)] == [cmd.id]
    core.on_play_finished(cmd.id, played_ms=500)
    journal.close()

    again = core_over(SqliteJournal(path))
    assert not [a for a in again.recover() if isinstance(a, Play)]
    # The journal kept the nonce: the same bytes again are a replay, refused and reported; the
    # gateway asking again (a fresh nonce) is answered with what happened.
    replay = again.on_command(contract.encode_command(cmd))
    assert [(a.message.status, a.message.reason) for a in replay if isinstance(a, Ack)] == [
        ("rejected", "replayed")
    ]
    retry = again.on_command(contract.encode_command(resend(cmd, at_ms=cmd.issued_at_ms + 1)))
    assert [a.message.status for a in retry if isinstance(a, Ack)] == ["played"]


def test_revoked_keys_are_remembered_and_dropped_keys_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = SqliteJournal(path)
    journal.remember_keys({"k-1": b"1" * 32, "k-2": b"2" * 32})
    journal.forget_keys({"k-1"}, {"k-1", "k-2"})
    journal.close()
    reopened = SqliteJournal(path)
    assert reopened.learned_keys() == {}
    assert reopened.revoked_keys() == {"k-1"}
    reopened.forget_keys({"k-1"}, ())  # learned again from another ring: no error
    assert reopened.revoked_keys() == {"k-1"}
