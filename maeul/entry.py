"""The ``maeul`` command's entry point. ``maeul speaker ...`` runs on a speaker's box, where
only ``maeul[agent]`` is installed: it goes straight to `maeul.speaker`, without importing the
gateway's commands; everything else to `maeul.cli`."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["speaker"]:
        from maeul.speaker import speaker_app

        speaker_app(args=sys.argv[2:], prog_name="maeul speaker")
        return
    from maeul.cli import main as gateway_main

    gateway_main()


if __name__ == "__main__":
    main()
