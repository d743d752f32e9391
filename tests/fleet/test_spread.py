"""Sessions through the load balancer spread over both backends, by least connections."""

from __future__ import annotations

from tests.fleet.conftest import Fleet


def test_sessions_spread_over_both_backends(fleet: Fleet) -> None:
    a, b = fleet.backends
    sessions = [fleet.open_session() for _ in range(4)]
    # Opened one after the other, each goes to the backend with fewer open connections.
    placed = [s.backend for s in sessions]
    assert placed.count(a) == placed.count(b) == 2, placed
    assert all(s.tried == [s.backend.address] and s.answers == ["101"] for s in sessions)
    # Each backend's own gauge agrees with where nginx says it placed them.
    fleet.wait_active((2, 2))
    for session in sessions:
        session.result()
    # Least connections, not round robin: with both of b's sessions ended, the next two both
    # go to b.
    for session in sessions:
        if session.backend is b:
            session.client.connection.close()
    fleet.wait_active((2, 0))
    assert [fleet.open_session().backend for _ in range(2)] == [b, b]
    fleet.wait_active((2, 2))
