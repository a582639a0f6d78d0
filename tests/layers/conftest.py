"""The traffic layers' tests upgrade real local fleets: they share the end-to-end fixtures."""

from __future__ import annotations

from tests.e2e.conftest import fleet

__all__ = ["fleet"]
