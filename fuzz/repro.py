"""Replay fuzz inputs and show where they fail, with the traceback the pipeline's safety net hid.

    .venv/bin/python -m fuzz.repro fuzz/crashes/<sha>.bin [...]   (from the repository root)
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from fuzz import run as fr


def main(paths: list[str]) -> int:
    fr._import_targets()
    from agtap.pipeline import Pipeline
    orig_abort = Pipeline._abort

    def abort(self, conn_id, reason, ts):
        if sys.exc_info()[0] is not None:       # called from feed's `except Exception`
            print("".join(traceback.format_exc()), file=sys.stderr)
        return orig_abort(self, conn_id, reason, ts)
    Pipeline._abort = abort
    bad = 0
    for p in paths:
        h = fr.Harness()
        try:
            h.one(Path(p).read_bytes())
            print(f"{p}: ok")
        except Exception as e:
            bad += 1
            print(f"{p}: {type(e).__name__}: {e}")
            traceback.print_exc()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
