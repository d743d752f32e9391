"""A backend killed outright loses only its own sessions; their clients reconnect to the other."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.fleet.conftest import WAIT_S, Fleet, FleetSession


def wait_dropped(session: FleetSession) -> None:
    """The client sees its connection end (nginx closes it when the backend's side dies), after
    whatever the backend had sent before (a `ping`); TimeoutError if it never does."""
    deadline = time.monotonic() + WAIT_S
    with pytest.raises(ConnectionClosed):
        while True:
            session.client.connection.recv(timeout=max(0.0, deadline - time.monotonic()))


def test_a_killed_backend_loses_only_its_own_sessions(fleet: Fleet) -> None:
    sessions = [fleet.open_session() for _ in range(4)]
    fleet.wait_active((2, 2))
    victim = sessions[0].backend
    survivor = fleet.other(victim)
    lost = [s for s in sessions if s.backend is victim]
    kept = [s for s in sessions if s.backend is survivor]
    assert len(lost) == len(kept) == 2

    victim.kill()
    for session in lost:
        wait_dropped(session)
    # Reconnected through nginx, each lands on the survivor and gets results there. While the
    # dead backend has the fewest connections nginx offers it first, is refused, and retries.
    reconnected = [fleet.open_session() for _ in lost]
    assert [s.backend for s in reconnected] == [survivor, survivor]
    assert all(s.answers[-1] == "101" for s in reconnected)
    assert reconnected[0].tried == [victim.address, survivor.address], reconnected[0].tried
    # The survivor's own sessions never noticed: same connections, results in sequence.
    for session in kept:
        assert session.result()["data"]["frame_idx"] == 1
        assert session.result()["data"]["frame_idx"] == 2
    for session in reconnected:
        session.result()
    assert survivor.active_sessions() == 4
