"""``maeul speaker``: commands run on a real speaker's box. Imports nothing of the gateway, so
they work where only ``maeul[agent]`` is installed (``maeul.entry`` routes to them directly)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from devices import enroll as enrollment

speaker_app = typer.Typer(
    help="A real speaker's box: enroll it / 실제 스피커 설치",
    no_args_is_help=True,
    add_completion=False,
)


@speaker_app.callback()
def _speaker() -> None:
    """A real speaker's box: enroll it / 실제 스피커 설치"""


def _say(text: str) -> None:
    typer.echo(text, err=True)


@speaker_app.command()
def enroll(
    gateway: Annotated[str, typer.Option(help="The gateway's URL, e.g. https://maeul.example")],
    code: Annotated[str, typer.Option(help="The one-time enrollment code from the console")],
    config: Annotated[
        Path, typer.Option(help="Where to write the agent's configuration")
    ] = enrollment.DEFAULT_CONFIG,
    state_dir: Annotated[
        Path, typer.Option(help="The agent's journal and receipt key")
    ] = enrollment.DEFAULT_STATE_DIR,
    no_systemd: Annotated[
        bool, typer.Option("--no-systemd", help="Write the configuration only")
    ] = False,
) -> None:
    """Redeem a one-time code: write this speaker's configuration and receipt key, and install
    and start the agent's systemd service (maeul-speaker)."""
    try:
        done = asyncio.run(
            enrollment.enroll(gateway, code, config_path=config, state_dir=state_dir)
        )
    except enrollment.EnrollError as exc:
        _say(f"maeul speaker enroll: {exc}")
        raise typer.Exit(2) from None
    identity = done.identity
    _say(
        f"스피커 {identity.speaker} ({identity.city}/{identity.district}/{identity.village}) "
        f"설치 정보를 {done.config_path}에 저장했습니다 / configuration written"
    )
    if not done.receipt_key_enrolled:
        _say("경고: 수신 확인 키가 등록되지 않았습니다 / warning: the receipt key was not enrolled")
    run = f"{sys.executable} -m devices.agent --config {done.config_path}"
    if no_systemd:
        _say(f"실행 / run: {run}")
        return
    unit = enrollment.render_unit(
        python=sys.executable, config_path=done.config_path, state_dir=state_dir.absolute()
    )
    if os.geteuid() != 0:
        unit_file = done.config_path.with_name(enrollment.UNIT_NAME)
        unit_file.write_text(unit, encoding="utf-8")
        _say("root가 아니어서 서비스를 설치하지 않았습니다. 다음을 실행하세요 / not root: run")
        for step in enrollment.manual_steps(unit_file, done.config_path):
            _say(f"  {step}")
        return
    try:
        path = enrollment.install_unit(unit, done.config_path)
    except enrollment.EnrollError as exc:
        _say(f"maeul speaker enroll: {exc}")
        raise typer.Exit(1) from None
    _say(
        f"서비스 {enrollment.UNIT_NAME} 설치, 시작 ({path}) / service installed and started; "
        f"logs: journalctl -u {enrollment.UNIT_NAME.removesuffix('.service')}"
    )
