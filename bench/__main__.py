"""Entry point of ``python -m bench``: runs every benchmark and writes bench/results/latest.json."""

from __future__ import annotations

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
