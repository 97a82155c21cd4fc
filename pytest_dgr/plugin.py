"""pytest plugin: every folder holding aci-manifest.yml becomes a collector of test items."""

from __future__ import annotations
