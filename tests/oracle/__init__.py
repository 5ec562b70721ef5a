"""Test-only oracles: third-party reference implementations fetched into .cache on demand (never shipped)."""
