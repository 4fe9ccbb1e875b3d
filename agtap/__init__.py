"""agtap: watch every LLM API call and MCP tool call on a Linux host, from outside."""

__version__ = "0.1.0"
