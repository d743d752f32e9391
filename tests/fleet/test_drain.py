"""Draining one backend through its instance's fleet agent, as a scale-in's termination hook
does: no new session lands on it, its live sessions get results until they end, none is cut,
and the hook completes only then."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from backend.instance.fleet_member import Action
from tests.fleet.conftest import Fleet, FleetBackend, poll


def draining_on_its_own_endpoints(backend: FleetBackend) -> bool:
    status, body = backend.ready()
    return status == 503 and body["draining"] is True and backend.metrics()["cvstack_draining"] == 1


def test_a_draining_backend_takes_no_new_session_and_cuts_none(fleet: Fleet) -> None:
    sessions = [fleet.open_session() for _ in range(4)]
    fleet.wait_active((2, 2))
    leaving = sessions[0].backend
    staying = fleet.other(leaving)
    live = [s for s in sessions if s.backend is leaving]

    instance = fleet.drain(leaving)
    poll(lambda: draining_on_its_own_endpoints(leaving), f"{leaving} draining")

    # A client straight to it is refused with a clear answer, before any WebSocket exists.
    with pytest.raises(InvalidStatus) as refused:
        connect(leaving.ws_url, open_timeout=30)
    assert refused.value.response.status_code == 503
    error = json.loads(refused.value.response.body)["error"]
    assert error["code"] == "draining" and "another instance" in error["message"]
    # Through nginx every new session lands on the other backend. nginx offers at least one of
    # the two to the leaving backend first (it holds fewer connections once the first is
    # placed), takes its 503 and retries on the other before the client sees anything.
    new = [fleet.open_session() for _ in range(2)]
    assert [s.backend for s in new] == [staying, staying]
    assert any(
        s.tried == [leaving.address, staying.address] and s.answers == ["503", "101"] for s in new
    ), [(s.tried, s.answers) for s in new]
    # The leaving backend's live sessions go on as if nothing happened...
    for session in live:
        session.result()
        session.result()
    assert leaving.active_sessions() == 2 and staying.active_sessions() == 4
    # ...until their users stop them: a normal end, not a cut.
    for session in live:
        session.client.send_json({"type": "stop"})
        assert session.client.receive_type("queue_status")["state"] == "finished"
        session.client.connection.close()
        assert session.client.connection.close_code == 1000
    poll(lambda: leaving.active_sessions() == 0, f"{leaving} without sessions")
    # Only now does the agent let Auto Scaling go on and terminate the instance.
    instance.step(Action.COMPLETE)
    for session in [*sessions, *new]:
        if session.backend is staying:
            session.result()


def test_a_session_waiting_on_a_draining_backend_is_sent_to_the_other(fleet: Fleet) -> None:
    """Both backends full: a fifth session on one waits in its queue. When that one drains the
    waiting session is told `draining` (close 1013, try again later); reconnecting through nginx
    places it on the other backend, where it runs as soon as a slot is free."""
    sessions = [fleet.open_session() for _ in range(8)]
    fleet.wait_active((4, 4))
    waiting = fleet.connect()
    waiting.client.send_json({"type": "init", "params": {"use_yolo": True}})
    waiting.client.send_json({"type": "start"})
    status = waiting.client.receive_type("queue_status")
    assert (status["state"], status["position"]) == ("waiting", 1), status
    leaving = waiting.backend
    staying = fleet.other(leaving)

    fleet.drain(leaving)

    error = waiting.client.receive_type("error")
    assert (error["code"], error["fatal"]) == ("draining", True)
    with pytest.raises(ConnectionClosed) as closed:
        waiting.client.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    # The page reconnects at once; a slot frees on the other backend when a user leaves there.
    retry = fleet.connect()
    assert retry.backend is staying
    retry.client.send_json({"type": "init", "params": {"use_yolo": True}})
    retry.client.send_json({"type": "start"})
    assert retry.client.receive_type("queue_status")["state"] == "waiting"
    next(s for s in sessions if s.backend is staying).client.connection.close()
    while (status := retry.client.receive_type("queue_status"))["state"] != "running":
        assert status["state"] == "waiting", status
    retry.result()
    # Nobody else was cut: every other session still gets results.
    for session in sessions:
        if session.client.connection.close_code is None:
            session.result()
