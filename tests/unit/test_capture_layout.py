"""One source for what bpf/*.c and userspace share (agtap/capture/records.py).

The numbers are defined in Python only and written ahead of the C by the
loader; the struct is defined in C only and checked against the header
userspace decodes. Without BCC here: struct record_t is read from the C text
into ctypes (the bpf tier checks BCC's own generated type, and Tracer.start
checks it at every start).
"""

from __future__ import annotations

import ctypes
import re

import pytest

from agtap.capture import loader, records

C_TYPES = {"u8": ctypes.c_uint8, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64, "char": ctypes.c_char}


def bpf_sources() -> dict[str, str]:
    d = loader.bpf_dir()
    return {f: (d / f).read_text() for f in loader.BPF_FILES}


def struct_from_c(text: str, name: str, seg_size: int = loader.SEG_SIZE) -> type[ctypes.Structure]:
    """A ctypes Structure from `struct NAME { ... };` in C text: fields 'type name;' or 'type name[N];'."""
    body = re.search(r"struct %s \{(.*?)\};" % name, text, re.S)
    assert body, f"struct {name} not found"
    fields = []
    for line in body.group(1).splitlines():
        line = re.sub(r"/\*.*?\*/", "", line).strip()
        if not line:
            continue
        m = re.fullmatch(r"(u8|u32|u64|char)\s+(\w+)(?:\[(\w+)\])?;", line)
        assert m, f"struct {name}: cannot read {line!r}"
        t = C_TYPES[m.group(1)]
        if m.group(3):
            n = seg_size if m.group(3) == "SEG_SIZE" else int(m.group(3))
            t = t * n
        fields.append((m.group(2), t))
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def test_record_t_in_c_is_what_userspace_decodes():
    rec = struct_from_c(bpf_sources()["common.h"], "record_t")
    assert records.layout_problems(rec) == []
    assert ctypes.sizeof(rec) - loader.SEG_SIZE == records.HDR_SIZE == 64


@pytest.mark.parametrize("edit", [
    ("    u32 pid;", "    u64 pid;"),                                 # a wider field
    ("    u8  flags;\n", ""),                                           # a field gone
    ("    u8  kind;\n    u8  flags;", "    u8  flags;\n    u8  kind;"),  # two swapped
    ("    char comm[16];", "    char comm[32];"),                       # data moves
])
def test_a_changed_record_t_is_caught(edit):
    text = bpf_sources()["common.h"]
    assert edit[0] in text
    rec = struct_from_c(text.replace(edit[0], edit[1], 1), "record_t")
    assert records.layout_problems(rec) != []


def test_the_c_defines_none_of_the_shared_numbers_itself():
    for f, text in bpf_sources().items():
        for k in records.BPF_CONSTANTS:
            assert not re.search(r"#\s*define\s+%s\b" % k, text), f"{f} defines {k}: it comes from records.py"


def test_every_shared_name_the_c_uses_is_defined_once_in_the_program_text():
    text = loader.program_text(1 << 20)
    body = "\n".join(bpf_sources().values())
    used = set(re.findall(r"\b(?:[KFSCW]_[A-Z][A-Z_]*|N_COUNTERS)\b", body))
    assert used and used <= set(records.BPF_CONSTANTS), used - set(records.BPF_CONSTANTS)
    for k, (v, _meaning) in records.BPF_CONSTANTS.items():
        assert len(re.findall(r"^#define %s %d$" % (k, v), text, re.M)) == 1, k


def test_the_numbers_are_consistent():
    v = {k: val for k, (val, _) in records.BPF_CONSTANTS.items()}
    kinds = [val for k, val in v.items() if k.startswith("K_")]
    states = [val for k, val in v.items() if k.startswith("S_")]
    slots = sorted(val for k, val in v.items() if k.startswith("C_"))
    watch = [val for k, val in v.items() if k.startswith("W_")]
    assert len(set(kinds)) == len(kinds) == 14 and 0 not in kinds      # 0: an unset record
    assert len(set(states)) == len(states) == 6 and 0 not in states    # 0: no entry
    assert len(set(watch)) == len(watch) == 4 and 0 not in watch       # 0: no entry
    assert v["F_CUT"] & v["F_LAST"] == 0
    assert slots == list(range(v["N_COUNTERS"]))                        # every slot read, none past the array
    assert sorted(records.COUNTER_SLOTS.values()) == slots and len(set(records.COUNTER_NAMES)) == len(slots)
    assert (records.K_TLS_WRITE, records.K_EXIT, records.S_NEVER, records.F_LAST) == (1, 7, 4, 2)
    assert (records.K_GO_WRITE, records.K_GO_READ, records.K_GO_CLOSE, records.KEY_GOTLS) == (8, 9, 10, 2)
