"""The backlog: order, RAM bound, the cap, SIGKILL safety and orphan clean-up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.paths import REPO_ROOT
from backend.summaries.backlog import Backlog, backlog_path, hold_lock, remove_orphans
from backend.summaries.observations import Observation


def window(index: int) -> Observation:
    return Observation(
        start=index * 10.0, end=index * 10.0 + 10, frames=1, detections={}, texts=(f"W{index}",)
    )


def indexes(items: list[tuple[int, Observation]]) -> list[int]:
    return [int(observation.texts[0][1:]) for _, observation in items]


def drain(backlog: Backlog, batch: int) -> list[int]:
    seen: list[int] = []
    while items := backlog.peek(batch):
        seen += indexes(items)
        backlog.remove_through(items[-1][0])
    return seen


def test_windows_come_out_in_order_through_ram_and_disk(tmp_path: Path) -> None:
    backlog = Backlog(tmp_path / "b.sqlite3", ram_items=4, max_items=100)
    outcomes = [backlog.push(window(i)) for i in range(10)]
    assert [o.spilled for o in outcomes] == [False] * 4 + [True] * 6
    assert (len(backlog), backlog.in_ram) == (10, 4)
    assert indexes(backlog.peek(3)) == [0, 1, 2]
    backlog.remove_through(backlog.peek(3)[-1][0])
    backlog.push(window(10))  # arrives while older windows are still on disk only
    assert drain(backlog, 3) == list(range(3, 11))
    backlog.push(window(11))  # empty again: back to RAM
    assert backlog.in_ram == 1 and drain(backlog, 5) == [11]


def test_ram_stays_bounded_over_ten_thousand_pushes(tmp_path: Path) -> None:
    backlog = Backlog(tmp_path / "b.sqlite3", ram_items=16, max_items=20_000)
    most_in_ram = 0
    for i in range(10_000):
        backlog.push(window(i))
        if i % 7 == 0:  # a slow reader now and then
            items = backlog.peek(3)
            backlog.remove_through(items[-1][0])
        most_in_ram = max(most_in_ram, backlog.in_ram)
    assert most_in_ram == 16
    remaining = drain(backlog, 16)
    assert remaining == list(range(10_000 - len(remaining), 10_000))


def test_beyond_the_cap_the_oldest_are_dropped_and_reported(tmp_path: Path) -> None:
    backlog = Backlog(tmp_path / "b.sqlite3", ram_items=3, max_items=5)
    dropped = sum(backlog.push(window(i)).dropped for i in range(12))
    assert dropped == 7 and len(backlog) == 5
    assert drain(backlog, 2) == [7, 8, 9, 10, 11]


CHILD = """
import sys
from pathlib import Path
from backend.summaries.backlog import Backlog
from backend.summaries.observations import Observation
backlog = Backlog(Path(sys.argv[1]), ram_items=8, max_items=1_000_000)
i = 0
while True:
    backlog.push(Observation(start=i, end=i + 1, frames=1, detections={}, texts=(f"W{i}",)))
    print(i + 1, flush=True)  # acknowledged: push returned
    i += 1
"""


@pytest.mark.integration  # runs a child process
def test_a_killed_process_loses_no_acknowledged_window(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = 0
    while acknowledged < 300:
        acknowledged = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)  # mid-stream: it keeps pushing until the signal lands
    child.wait(timeout=10)
    reopened = Backlog(path, ram_items=8, max_items=1_000_000)
    kept = len(reopened)
    assert kept >= acknowledged
    assert drain(reopened, 50) == list(range(kept))


@pytest.mark.integration  # runs a child process
def test_files_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"{int(finished.stdout)}-oldsession.sqlite3"
    for name in (dead.name, dead.name + "-wal", dead.name + "-shm"):
        (tmp_path / name).write_bytes(b"")
    live = Backlog(backlog_path(tmp_path, "live"), ram_items=2, max_items=10)
    live.push(window(0))
    assert remove_orphans(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if "oldsession" in p.name) == []
    assert live.path.exists() and str(os.getpid()) in live.path.name
    live.close(delete=True)
    assert list(tmp_path.iterdir()) == []


FULL_DISK_CHILD = """
    import resource, signal, sys
    from backend.summaries.backlog import Backlog
    from backend.summaries.observations import Observation
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    backlog = Backlog(__import__("pathlib").Path(sys.argv[1]), ram_items=4, max_items=10**6)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    pushed = 0
    try:
        while True:
            backlog.push(Observation(start=pushed, end=pushed + 1, frames=1, detections={},
                                     texts=("x" * 2000,)))
            pushed += 1
    except Exception as exc:
        print(pushed, type(exc).__name__, exc, sep="|")
    print(len(backlog), len(backlog.peek(10)), sep="|")
"""


@pytest.mark.integration  # runs a child process
def test_a_full_disk_raises_its_own_error_and_keeps_what_was_written(tmp_path: Path) -> None:
    """The file-size limit stands in for a full disk: SQLite's own error must come out
    (not "cannot rollback", which hid it), and every window pushed before stays readable."""
    path = tmp_path / "b.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK_CHILD), str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    failure, sizes = done.stdout.splitlines()
    pushed, kind, message = failure.split("|")
    assert int(pushed) > 0
    assert kind == "OperationalError"
    assert "rollback" not in message
    assert message in ("database or disk is full", "disk I/O error")
    assert sizes == f"{pushed}|4"


FULL_DISK_OPEN_CHILD = """
    import os, resource, signal, sys
    from pathlib import Path
    from backend.summaries.backlog import Backlog
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # not one byte may be written
    folder = Path(sys.argv[1])
    for index in range(3):
        try:
            Backlog(folder / f"{index}.sqlite3", ram_items=4, max_items=10)
        except Exception as exc:
            print(type(exc).__name__)
    print(sorted(path.name for path in folder.iterdir()))
    print(sum(os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
              for fd in os.listdir("/proc/self/fd") if os.path.islink(f"/proc/self/fd/{fd}")))
"""


@pytest.mark.integration  # runs a child process
def test_a_backlog_that_cannot_be_created_leaves_no_file_and_no_descriptor(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK_OPEN_CHILD), str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *errors, files, descriptors = done.stdout.splitlines()
    assert errors == ["OperationalError"] * 3
    assert (files, descriptors) == ("[]", "0")


OWNER_CHILD = """
    import os, sys, time
    from pathlib import Path
    from backend.summaries.backlog import Backlog, backlog_path, hold_lock, remove_orphans
    from backend.summaries.observations import Observation
    if sys.argv[2] == "fake-pid-1":
        os.getpid = lambda: 1  # the pid a container's server has
    folder = Path(sys.argv[1])
    if sys.argv[3] == "clean":
        print(os.getpid(), remove_orphans(folder), flush=True)
        sys.exit()
    backlog = Backlog(backlog_path(folder, sys.argv[3]), ram_items=2, max_items=10)
    backlog.push(Observation(start=0, end=10, frames=1, detections={}, texts=("W0",)))
    status = Path("/proc/self/status").read_text()  # the host's /proc: NSpid = host pid, ns pid
    host_pid = [line.split()[1] for line in status.splitlines() if line.startswith("NSpid:")][0]
    print(os.getpid(), host_pid, backlog.path.name, flush=True)
    time.sleep(600)
"""
PID_NAMESPACE = ["unshare", "--user", "--map-root-user", "--pid", "--fork"]


def pid_namespaces_work() -> bool:
    try:
        probe = subprocess.run(
            [*PID_NAMESPACE, "true"], check=False, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def start_owner(folder: Path, how: str, session: str) -> tuple[subprocess.Popen[str], int, str]:
    """A process that opens a backlog for `session` and waits: (process, pid to kill, file)."""
    prefix = PID_NAMESPACE if how == "pid-namespace" else []
    child = subprocess.Popen(
        [*prefix, sys.executable, "-c", textwrap.dedent(OWNER_CHILD), str(folder), how, session],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    recorded_pid, host_pid, name = child.stdout.readline().split()
    assert recorded_pid == "1" and name.startswith("1-"), "the owner is PID 1 in its container"
    return child, int(host_pid), name


def clean_as_pid_1(folder: Path, how: str) -> int:
    prefix = PID_NAMESPACE if how == "pid-namespace" else []
    done = subprocess.run(
        [*prefix, sys.executable, "-c", textwrap.dedent(OWNER_CHILD), str(folder), how, "clean"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    recorded_pid, removed = done.stdout.split()
    assert recorded_pid == "1", "the new server is PID 1 too"
    return int(removed)


@pytest.mark.integration  # runs child processes
@pytest.mark.parametrize("how", ["pid-namespace", "fake-pid-1"])
def test_a_crashed_pid_1_owner_is_cleaned_by_the_next_pid_1_and_a_live_one_is_kept(
    tmp_path: Path, how: str
) -> None:
    """The container case: every server is PID 1, so "is PID 1 alive" cannot tell a crashed
    owner's files from a running one's. `pid-namespace` runs each process as PID 1 of a
    fresh PID namespace (as in a container); `fake-pid-1` only makes each report pid 1."""
    if how == "pid-namespace" and not pid_namespaces_work():
        pytest.skip("unprivileged user and PID namespaces (unshare) are not available here")
    crashed, crashed_pid, crashed_file = start_owner(tmp_path, how, "crashed")
    running, running_pid, running_file = start_owner(tmp_path, how, "running")
    try:
        os.kill(crashed_pid, signal.SIGKILL)  # the owner itself, not `unshare` around it
        crashed.wait(timeout=10)
        assert (tmp_path / crashed_file).exists() and (tmp_path / f"{crashed_file}-wal").exists()
        assert clean_as_pid_1(tmp_path, how) == 1
        left = sorted(path.name for path in tmp_path.iterdir())
        assert not any(name.startswith(crashed_file) for name in left), left
        assert running_file in left and f"{running_file}.lock" in left
    finally:
        for process, pid in ((crashed, crashed_pid), (running, running_pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert clean_as_pid_1(tmp_path, how) == 1, "its turn once it is gone"
    assert list(tmp_path.iterdir()) == []


def test_an_open_backlog_holds_its_lock_and_closing_it_removes_every_file(
    tmp_path: Path,
) -> None:
    path = backlog_path(tmp_path, "session")
    backlog = Backlog(path, ram_items=2, max_items=10)
    backlog.push(window(0))
    assert remove_orphans(tmp_path) == 0, "its own open backlog is not an orphan"
    with pytest.raises(BlockingIOError):
        hold_lock(path)
    backlog.close(delete=False)
    reopened = Backlog(path, ram_items=2, max_items=10)
    assert drain(reopened, 2) == [0]
    reopened.close(delete=True)
    assert list(tmp_path.iterdir()) == []
