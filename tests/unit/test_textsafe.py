"""textsafe: hostile strings from traced processes must not reach a terminal as control sequences."""

from agtap.textsafe import printable, safe_field


def test_plain_text_is_unchanged():
    assert printable("claude-sonnet-4-5 héllo 模型 ✓") == "claude-sonnet-4-5 héllo 模型 ✓"


def test_osc_title_with_bel_is_removed_whole():
    assert printable("a\x1b]0;pwned title\x07b") == "ab"


def test_osc_terminated_by_st_is_removed_whole():
    assert printable("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b") == "alinkb"


def test_csi_clear_screen_and_colours_are_removed():
    assert printable("\x1b[2J\x1b[1;31mred\x1b[0m") == "red"


def test_eight_bit_csi_and_osc_are_removed():
    assert printable("x\x9b2Jy") == "xy"
    assert printable("x\x9d0;t\x9cy") == "xy"


def test_other_escape_sequences_and_lone_esc():
    assert printable("a\x1bcb\x1b(Bc\x1b") == "abc"


def test_c0_del_c1_and_nul_are_removed_tab_newline_kept():
    assert printable("a\x00b\x07c\x08d\re\x7ff\x85g\th\ni") == "abcdefg\th\ni"


def test_bidi_overrides_are_removed():
    assert printable("safe\u202eexe.txt\u2066x\u2069") == "safeexe.txtx"


def test_unterminated_osc_leaves_only_harmless_text():
    out = printable("\x1b]0;title")
    assert out == "0;title"  # ESC ] taken as a two-byte sequence; the rest is plain text


def test_max_len_cuts_with_ellipsis():
    assert printable("x" * 10_000, max_len=8) == "xxxxxxx…"
    assert len(printable("y" * 10_000, max_len=200)) == 200
    assert printable("short", max_len=8) == "short"
    assert printable("abc", max_len=0) == ""


def test_none_bytes_and_numbers():
    assert printable(None) == ""
    assert printable(b"ok\x1b[2J\xff") == "ok\ufffd"
    assert printable(42) == "42"


def test_lone_surrogate_becomes_replacement():
    assert printable("a\udcffb") == "a?b"


def test_safe_field_is_one_bounded_line():
    assert safe_field("get_weather\nFAKE LOG LINE\r\n\ttool") == "get_weather FAKE LOG LINE tool"
    assert safe_field("a" * 500) == "a" * 199 + "…"
    assert safe_field("\x1b]0;t\x07m\x00odel", 10) == "model"
    assert safe_field(None) == ""
