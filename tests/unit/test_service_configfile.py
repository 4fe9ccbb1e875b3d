"""/etc/agtap/agtap.toml: keys, types, clear errors, precedence (flags > file > environment > defaults)."""

from __future__ import annotations


import pytest

from agtap.config import Config
from agtap.service.configfile import ConfigFileError, build_config, load_config_file


def write(tmp_path, text):
    p = tmp_path / "agtap.toml"
    p.write_text(text)
    return str(p)


def test_every_key_is_a_flag_name(tmp_path):
    p = write(tmp_path, 'comm = ["python3"]\npid = [12]\nmax_log_size = 50\nbody_retention = 12\n'
                        'verbose = true\nevent_log = "/var/log/x.jsonl"\notel = "http://127.0.0.1:4318"\n')
    assert load_config_file(p) == {"comms": ["python3"], "pids": [12], "max_log_size": 50, "body_retention": 12.0,
                                   "verbose": True, "event_log": "/var/log/x.jsonl", "otel": "http://127.0.0.1:4318"}


def test_missing_file_is_empty_unless_required(tmp_path):
    assert load_config_file(str(tmp_path / "none.toml")) == {}
    with pytest.raises(ConfigFileError, match="no such file"):
        load_config_file(str(tmp_path / "none.toml"), missing_ok=False)


@pytest.mark.parametrize("text,match", [
    ("colour = 1\n", "unknown key 'colour'"),
    ("record = 'x'\n", "unknown key 'record'"),
    ("max_log_size = '100'\n", "max_log_size = '100': expected a whole number"),
    ("max_log_size = -1\n", "expected a number ≥ 0"),
    ("verbose = 1\n", "verbose = 1: expected true or false"),
    ("comm = 'python3'\n", "expected a list of str"),
    ("pid = [0]\n", "pid 0"),
    ("comm = ['far-too-long-a-name']\n", "process name"),
    ("bus = 'tcp'\n", "bus = 'tcp'"),
    ("comm = ['a']\ncomms = ['b']\n", "given twice"),
    ("max_log_size = \n", "not valid TOML"),
])
def test_errors_name_the_key(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(ConfigFileError, match=match) as e:
        load_config_file(p)
    assert str(e.value).startswith(p)


def test_precedence(tmp_path):
    p = write(tmp_path, 'event_log = "/from/file"\nmax_log_files = 9\ncomm = ["node"]\n')
    env = {"AGTAP_LOG": "/from/env"}
    assert build_config({}, None, env).event_log == "/from/env"
    c = build_config({}, p, env)
    assert (c.event_log, c.max_log_files, c.comms) == ("/from/file", 9, ["node"])
    c = build_config({"comms": ["python3"], "event_log": "/from/flag"}, p, env)
    assert (c.event_log, c.max_log_files, c.comms) == ("/from/flag", 9, ["python3"])
    base = Config(bus="session")
    assert build_config({}, p, {}, base=base).bus == "session" and base.comms == []
