"""json.loads for bytes from the wire: every way it can fail is a ValueError.

json.loads raises RecursionError (not ValueError) on deeply nested input
(`[[[[...` 100k deep is a few hundred KB): a hostile server must not turn a
parse error into an internal error.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
