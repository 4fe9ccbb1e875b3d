"""Where things are: the repository root and the interpreter the tests run under.

tests/ is importable as the package `tests` because pyproject.toml's pytest section puts
the repository root on sys.path (`pythonpath = ["."]`); subprocesses get it through
PYTHONPATH (tests.support.dbus.procs.env_for) or by running with cwd=REPO.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
