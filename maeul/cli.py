"""The `maeul` command line: the entry point and its wiring, and the commands that run things
(the demo, the gateway, migrations, seeding, the simulated fleet).

The client commands live beside it: broadcasts in ``maeul.broadcasting``, schedules in
``maeul.schedule_commands``, broker files in ``maeul.broker_commands``, accounts and the audit
in ``maeul.accounts``, live talk in ``maeul.live``, proof of play in ``maeul.proof``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.console import Console

from audio.cli import app as audio_app
from audio.speech.cli import app as tts_app
from maeul import accounts, broadcasting, live
from maeul.broker_commands import broker_app
from maeul.proof import proof_app
from maeul.schedule_commands import schedule_app
from maeul.speaker import speaker_app

app = typer.Typer(
    name="maeul",
    help="Maeul smart-village broadcast gateway / 마을 방송 게이트웨이",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations / 데이터베이스", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audio_app, name="audio", help="Audio conversion and probing / 오디오 변환")
app.add_typer(tts_app, name="tts", help="Text to speech / 방송 문구 음성 변환")
app.add_typer(schedule_app, name="schedule")
app.add_typer(broker_app, name="broker")
app.command()(accounts.login)
app.command()(accounts.logout)
app.command()(accounts.whoami)
app.add_typer(accounts.audit_app, name="audit")
app.command()(live.live)
app.add_typer(proof_app, name="proof")
app.add_typer(speaker_app, name="speaker")

console = Console(stderr=True)


def main() -> None:
    app()


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"maeul {version('maeul')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and stop"
        ),
    ] = False,
) -> None:
    """Maeul smart-village broadcast gateway / 마을 방송 게이트웨이"""


@app.command()
def secret() -> None:
    """Print a new random secret (256 bits) for GATEWAY_JWT_SECRET and the other keys."""
    from gateway.keyfiles import new_secret

    typer.echo(new_secret())


@app.command()
def run(
    port: Annotated[int, typer.Option(help="HTTP port of the API")] = 8000,
    host: Annotated[str, typer.Option(help="Address the API listens on")] = "127.0.0.1",
    preset: Annotated[str, typer.Option(help="Demo city: jinju | gimcheon | tiny")] = "jinju",
    speed: Annotated[float, typer.Option(help="Simulated playback speed factor")] = 1.0,
    simulate: Annotated[bool, typer.Option(help="Start the simulated speaker fleet")] = True,
    simulators: Annotated[
        int,
        typer.Option(
            min=0,
            help="Simulator processes sharing the fleet (0: one per 5,000 speakers and receivers)",
        ),
    ] = 0,
) -> None:
    """Run the whole demo on embedded defaults: broker, database, gateway and speakers."""
    from gateway.allocator import tune_allocator

    tune_allocator()  # before any thread starts
    from maeul.run import run_demo

    raise typer.Exit(
        asyncio.run(
            run_demo(
                host=host,
                port=port,
                preset=preset,
                speed=speed,
                simulate=simulate,
                simulators=simulators or None,
            )
        )
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the gateway API with settings from GATEWAY_* environment variables."""
    from gateway.allocator import tune_allocator

    tune_allocator()  # before any thread starts

    import uvicorn

    from gateway.app import create_app
    from gateway.auth import signing_key
    from gateway.collector import tune_for_serving
    from gateway.keyfiles import SecretError
    from gateway.live.ingest import MAX_WS_MESSAGE_BYTES
    from gateway.logs import configure_logging
    from gateway.serving import GatewayServer, server_options
    from gateway.settings import Settings

    configure_logging()
    settings = Settings()
    try:
        signing_key(settings)  # the lifespan reads it again; a bad one should stop us here
    except SecretError as exc:
        typer.echo(f"maeul serve: {exc}", err=True)
        raise typer.Exit(2) from None
    app = create_app(settings)
    tune_for_serving()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws_max_size=MAX_WS_MESSAGE_BYTES,
        **server_options(settings),
    )
    GatewayServer(config, app.state.stopping).run()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database (GATEWAY_DATABASE_URL) to the latest schema."""
    from gateway.migrations import upgrade
    from gateway.settings import Settings

    settings = Settings(environment=os.environ.get("GATEWAY_ENVIRONMENT", "development"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    console.print(f"데이터베이스를 최신 상태로 맞췄습니다 ({revision}).")


@app.command()
def seed(
    preset: Annotated[str, typer.Option(help="jinju | gimcheon | tiny")] = "jinju",
) -> None:
    """Fill an empty database with a demo city's districts, villages and speakers, and the
    preset's households (gimcheon: 56,000, residents' numbers synthetic, 010-0XXX-XXXX)."""
    from maeul.run import seed_database

    report = asyncio.run(seed_database(preset, households=True))
    console.print(report)


@app.command()
def simulate(
    speed: Annotated[float, typer.Option(help="Playback speed factor")] = 1.0,
    offline_ratio: Annotated[float, typer.Option(help="Share of speakers that stay offline")] = 0.0,
    reject_ratio: Annotated[float, typer.Option(help="Share of speakers that reject")] = 0.0,
    credentials_from: Annotated[
        str | None,
        typer.Option(
            "--credentials",
            help="JSON file of speaker code -> broker password ('-': standard input)",
        ),
    ] = None,
    part: Annotated[
        int, typer.Option(min=0, help="Which share of the fleet this process runs (0-based)")
    ] = 0,
    parts: Annotated[int, typer.Option(min=1, help="How many shares the fleet is split in")] = 1,
    heartbeat: Annotated[
        float, typer.Option(min=1, help="Seconds between heartbeats (the gateway's heartbeat_s)")
    ] = 30.0,
) -> None:
    """Run a simulated speaker fleet for the seeded city (fleet read from the gateway's API), or
    one share of it: `--part 1 --parts 4` runs every fourth speaker by code, from the second."""
    from maeul.simulation import simulate_fleet

    if part >= parts:
        console.print("--part 는 --parts 보다 작아야 합니다. / --part must be below --parts.")
        raise typer.Exit(2)

    raise typer.Exit(
        asyncio.run(
            simulate_fleet(
                speed=speed,
                offline_ratio=offline_ratio,
                reject_ratio=reject_ratio,
                credentials_from=credentials_from,
                part=part,
                parts=parts,
                heartbeat_s=heartbeat,
            )
        )
    )


# Registered after the commands above, so `maeul --help` lists them in the same order as ever.
for command in (
    broadcasting.broadcast,
    broadcasting.status,
    broadcasting.cancel,
    broadcasting.resend,
    broadcasting.approve,
    broadcasting.templates,
):
    app.command()(command)

if __name__ == "__main__":
    main()
