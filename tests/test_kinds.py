"""Every collected test is of exactly one kind: `unit`, `integration` or `browser`."""

from __future__ import annotations

import pytest

from tests.conftest import KINDS_BY_TEST


def test_every_collected_test_has_exactly_one_kind(request: pytest.FixtureRequest) -> None:
    kinds = request.config.stash[KINDS_BY_TEST]  # all collected, before `-m` deselected any
    assert kinds[request.node.nodeid] == ["unit"]
    wrong = {nodeid: found for nodeid, found in kinds.items() if len(found) != 1}
    assert not wrong, wrong
