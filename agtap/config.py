"""Configuration: one dataclass, filled from flags, then /etc/agtap/agtap.toml, then the environment.

Every key of the TOML file is the long name of a flag with '-' written as '_'
(`max_log_size = 100`). The CLI (agtap/cli.py) owns the flags; this module owns
the defaults and their meaning: the CLI help is generated from them, and
tests/unit/test_defaults.py checks the man page and etc/agtap.toml against them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_CONFIG_FILE = "/etc/agtap/agtap.toml"
DEFAULT_EVENT_LOG = "/var/log/agtap/events.jsonl"
DEFAULT_BODIES_DIR = "/var/lib/agtap/bodies"
DEFAULT_RUNTIME_DIR = "/run/agtap"
DEFAULT_CACHE_DIR = "/var/cache/agtap"
# programs watched at exec under the per-process probe scope (agtap/capture/watchpolicy.py):
# patterns of an executable's file name, its process name, or a library it links (libcurl: an
# HTTP client library, so curl and programs built on it)
DEFAULT_RUNTIMES = ("python3*", "python", "node", "nodejs", "bun", "deno", "claude", "opencode", "libcurl.so*")
PROBE_SCOPES = ("process", "host")


@dataclass(slots=True)
class Config:
    pids: list[int] = field(default_factory=list)        # -p/--pid, repeatable
    comms: list[str] = field(default_factory=list)       # -c/--comm, repeatable
    probe_scope: str = "process"                          # process | host: where the TLS data probes sit
    agent_runtimes: list[str] = field(default_factory=lambda: list(DEFAULT_RUNTIMES))   # watched at exec
    max_uprobes: int = 4096                               # uprobes (perf event fds) held at most
    demote_after_requests: int = 0                        # process scope: demote a watched process after N
    demote_after_mib: float = 0.0                         # ignored requests / M MiB, no LLM call (0: never)
    hold_ms: int = 1000                                   # process scope: a starting runtime waits at most this
                                                          # long at the open of a probed file (0: never held)
    verbose: bool = False                                 # -v
    max_capture_bytes: int = 4 * 1024 * 1024              # per SSL_write/read call
    event_log: str = DEFAULT_EVENT_LOG                    # AGTAP_LOG
    bodies_dir: str = DEFAULT_BODIES_DIR
    runtime_dir: str = DEFAULT_RUNTIME_DIR
    cache_dir: str = DEFAULT_CACHE_DIR                     # AGTAP_CACHE_DIR: located BoringSSL offsets
    max_body_store: int = 1024                            # MB of bodies kept (oldest removed first)
    body_retention: float = 24 * 7                        # hours bodies are kept
    max_log_size: int = 100                               # MB before the event log rotates
    max_log_files: int = 5                                # rotated files kept
    stdout: bool = True                                   # JSONL on stdout (foreground)
    otel: str | None = None                               # OTLP/HTTP base URL
    metrics_addr: str | None = None                       # host:port for /metrics
    bus: str = "system"                                   # system | session | none
    record: str | None = None                             # `agtap record FILE`

    def apply_env(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        if env.get("AGTAP_LOG"):
            self.event_log = env["AGTAP_LOG"]
        if env.get("AGTAP_CACHE_DIR"):
            self.cache_dir = env["AGTAP_CACHE_DIR"]


def shown(value: object) -> str:
    """A default as the CLI help, the man page and etc/agtap.toml write it (168.0 -> "168")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
