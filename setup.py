"""Packs the migrations into the wheel.

Developers edit them where Alembic's tools expect them, in the top-level ``alembic/``; an
installed gateway has no source tree, so the build copies them into the ``gateway`` package as
``gateway/_migrations`` (``gateway/migrations.py`` reads them from there). Everything else about
the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithMigrations(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        source = HERE / "alembic"
        target = Path(self.build_lib) / "gateway" / "_migrations"
        shutil.rmtree(target, ignore_errors=True)
        (target / "versions").mkdir(parents=True)
        for name in ("env.py", "script.py.mako"):
            shutil.copy2(source / name, target / name)
        for revision in sorted((source / "versions").glob("*.py")):
            shutil.copy2(revision, target / "versions" / revision.name)


setup(cmdclass={"build_py": BuildWithMigrations})
