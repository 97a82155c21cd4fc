"""dgr: build container images from a conventional folder, configure them at start, test them."""

from __future__ import annotations

__version__ = "0.1.0"
