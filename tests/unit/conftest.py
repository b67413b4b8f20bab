from __future__ import annotations

import pytest

from tests.unit.support import MemoryKit


@pytest.fixture
def memory_kit() -> MemoryKit:
    return MemoryKit()
