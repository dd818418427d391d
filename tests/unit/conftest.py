"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tpd2py.hub import Hub


@pytest.fixture
def hub() -> Iterator[Hub]:
    """A fresh Hub (not the thread's get_hub() one), closed after the test."""
    hub = Hub()
    yield hub
    hub.close()
