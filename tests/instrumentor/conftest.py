"""The instrumentor tests upgrade the same local GET-like fleet as the get tests."""

from tests.get.conftest import make_fleet  # noqa: F401 - the fixture, shared
