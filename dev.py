#!/usr/bin/env python3
"""Set-up and everyday commands for barnebro, needing nothing but Python 3.11+.

    python3 dev.py up [--port 8080] [--data-dir DIR]   install if needed, run the stack
    python3 dev.py test [pytest arguments]             install if needed, lint, type-check, test
    python3 dev.py bench NAME [arguments]              install if needed, run a benchmark, or all
    python3 dev.py barnebro ARGS                       install if needed, run the barnebro CLI

The first run creates `.venv` beside this file and installs the project with its
development tools into it; later runs reinstall only when pyproject.toml changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".barnebro-installed"


def ensure_installed() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run on an older Python
        sys.exit("barnebro needs Python 3.11 or newer")
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.read_text() == pyproject.read_text():
        return
    if not (BIN / "python").exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing barnebro and its development tools into .venv …", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(pyproject.read_text())


def run(*command: str) -> int:
    return subprocess.run(command, cwd=ROOT).returncode


def test(args: list[str]) -> int:
    steps = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy")],
        [str(BIN / "python"), "-m", "pytest", *args],
    ]
    for step in steps:
        print("$", " ".join(Path(step[0]).name if i == 0 else s for i, s in enumerate(step)),
              flush=True)  # fmt: skip
        code = run(*step)
        if code != 0:
            return code
    return 0


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("up", "test", "bench", "barnebro"):
        sys.exit(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    ensure_installed()
    if command == "test":
        sys.exit(test(args))
    if command == "bench":
        sys.exit(run(str(BIN / "python"), "-m", "bench", *args))
    if command == "up":
        os.execv(str(BIN / "barnebro"), [str(BIN / "barnebro"), "up", *args])
    os.execv(str(BIN / "barnebro"), [str(BIN / "barnebro"), *args])


if __name__ == "__main__":
    main()
