"""The elements of a streamed top-level JSON array, each as soon as it is complete.

Gemini's streamGenerateContent without `alt=sse` answers with one JSON array
whose elements (GenerateContentResponse objects) arrive over time, written as
`[{...}\r\n,\r\n{...}\r\n]`. Handing out each element when its last byte
arrives gives the right time to first token. A body that is a single object
instead of an array is handed out whole at the end.

The scan uses json's raw_decode at element starts, retried only when new bytes
contain a '}' (an object can only end there), so a chunk costs one C-level
parse, not a Python loop over its bytes.
"""

from __future__ import annotations

import codecs
import json
from agtap.wire.jsontext import loads

_decoder = json.JSONDecoder()
_WS = " \t\r\n"
DEFAULT_MAX_ELEMENT = 16 * 1024 * 1024


class JsonArrayStream:
    __slots__ = ("text", "pos", "utf8", "state", "error", "max_element")

    def __init__(self, max_element: int = DEFAULT_MAX_ELEMENT):
        self.text = ""
        self.pos = 0
        self.utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.state = "start"      # start | array | done | object
        self.error: str | None = None
        self.max_element = max_element

    def feed(self, data: bytes) -> list:
        if self.error or self.state == "done":
            return []
        new = self.utf8.decode(data)
        if not new:
            return []
        if self.pos:
            self.text = self.text[self.pos:] + new
            self.pos = 0
        else:
            self.text += new
        if "}" not in new and "]" not in new and self.state != "start":
            self._bound()
            return []
        return self._scan(final=False)

    def finish(self) -> list:
        """End of body: the last element, or an error if something is left unparsed."""
        if self.error or self.state == "done":
            return []
        out = self._scan(final=True)
        rest = self.text[self.pos:].strip(_WS)
        if self.state == "object" and rest:
            try:
                out.append(loads(rest))
                self.state = "done"
                return out
            except ValueError as e:
                self.error = f"bad json: {e.msg}"
                return out
        if rest or self.state == "array":
            self.error = "unterminated json array" if not rest else "bad json array element"
        return out

    def _scan(self, final: bool) -> list:
        out = []
        text = self.text
        n = len(text)
        pos = self.pos
        while pos < n:
            c = text[pos]
            if c in _WS:
                pos += 1
                continue
            if self.state == "start":
                if c == "[":
                    self.state = "array"
                    pos += 1
                    continue
                self.state = "object"
            if self.state == "object":
                break
            if c == ",":
                pos += 1
                continue
            if c == "]":
                self.state = "done"
                pos = n
                break
            try:
                obj, end = _decoder.raw_decode(text, pos)
            except ValueError:
                break  # incomplete so far: retried when a '}' arrives
            out.append(obj)
            pos = end
        self.pos = pos
        self._bound()
        return out

    def _bound(self) -> None:
        if len(self.text) - self.pos > self.max_element:
            self.error = "json element too large"
            self.text, self.pos = "", 0
