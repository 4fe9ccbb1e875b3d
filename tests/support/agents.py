"""Real agents as test clients: where setup put them, and how they are pointed at the fake API.

setup/agents.txt pins each agent (an npm package); setup/setup.sh installs it once into
$AGTAP_AGENT_CACHE/<package>@<version> (default /var/cache/agtap-test/agents). Nothing here
downloads: a missing agent is a failure that names the command which installs it.

Gemini CLI (`@google/gemini-cli`, runs on node) is given a HOME of its own with a
settings.json naming its MCP servers, the Gemini API key auth with a fake key, and the local
fake API as `GOOGLE_GEMINI_BASE_URL` (trusted through NODE_EXTRA_CA_CERTS). Telemetry, usage
statistics and update checks are off, and only the variables listed here reach it (no proxy,
no real key, no Google Cloud project): it can reach nothing but the fake API. `-m` names the
model, so its model router makes no classifier calls of its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "setup" / "agents.txt"
CACHE = Path(os.environ.get("AGTAP_AGENT_CACHE", "/var/cache/agtap-test/agents"))
GEMINI_KEY = "agtap-fake-gemini-cli-key"
GEMINI_MODEL = "gemini-2.5-flash"


def pinned(package: str) -> str:
    """'<package>@<version>' as setup/agents.txt pins it."""
    for line in PINS.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec.rsplit("@", 1)[0] == package:
            return spec
    raise KeyError(f"{package} is not pinned in {PINS}")


def agent_dir(package: str) -> Path:
    d = CACHE / pinned(package)
    if not (d / ".agtap-installed").is_file():
        raise AssertionError(f"{pinned(package)} is not installed in {d}: run 'sudo make setup'")
    return d


def gemini_bin() -> Path:
    return agent_dir("@google/gemini-cli") / "node_modules" / ".bin" / "gemini"


def bun_bin() -> Path:
    return agent_dir("@oven/bun-linux-x64") / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"


def gemini_env(home: Path, base_url: str, ca: Path, mcp_servers: dict) -> dict[str, str]:
    """Write HOME/.gemini/settings.json and return the environment to run `gemini` with."""
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "mcpServers": mcp_servers,
    }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2))
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "dumb", "NO_COLOR": "1",
        "GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": base_url, "NODE_EXTRA_CA_CERTS": str(ca),
        "GEMINI_CLI_NO_RELAUNCH": "true",   # one node process: the pid the test started is the client
    }
