"""Root conftest: keep pytest's collection to our own test suite and examples."""

from __future__ import annotations

collect_ignore_glob = ["**/target/*", ".venv/*"]
