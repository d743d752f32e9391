"""A session's queue of observation windows waiting for the LLM: durable, ordered, bounded.

Every accepted window is written through to a per-session SQLite file (WAL journal) in its
own transaction before `push` returns; RAM holds only the oldest `ram_items` windows (the
ones the summariser reads next), the rest live on disk alone ("spilled") and are read back
in batches. So memory is O(ram_items) however long the provider is down, and no file is ever
rewritten: a push appends one row, a read is an index range scan, a removal deletes a key
range.

Crash safety: a committed SQLite transaction survives the death of the process (SIGKILL
included: it is in the WAL file, which the OS holds even if the process dies; `synchronous=
NORMAL` gives up only the last transactions on *power* loss, never consistency). Reopening
the file therefore finds every window whose `push` returned, in order. A new process does
not resume old sessions, though: a session is one WebSocket connection and dies with its
process, so `remove_orphans` deletes the files of dead processes at start-up.

Whose file is it: an open `Backlog` holds an exclusive `flock` on `<file>.lock` beside its
file, and the kernel releases it when the process dies (SIGKILL included). A file whose lock
can be taken is an orphan, whatever pid its name starts with: the pid is for people only,
since a container's server is PID 1 and so is the next container's.

Up to `max_items` windows nothing is lost; beyond it the oldest is deleted in the same
transaction as the insert, and `push` reports it so the caller can count it and tell the
client.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from backend.summaries.observations import Observation

SUFFIX = ".sqlite3"
LOCK_SUFFIX = ".lock"
SIDE_FILES = ("-wal", "-shm", LOCK_SUFFIX)  # the lock is removed last


@dataclass(frozen=True)
class PushOutcome:
    dropped: int  # oldest windows deleted to stay within max_items
    spilled: bool  # the window is on disk only, RAM being full


class Backlog:
    """FIFO of `Observation`s on SQLite with a bounded RAM head; one thread at a time."""

    def __init__(self, path: Path, *, ram_items: int, max_items: int) -> None:
        self.path = path
        self.ram_items = ram_items
        self.max_items = max_items
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = hold_lock(path)  # before the file exists: never an orphan meanwhile
        existed = path.exists()
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS windows (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)"
            )
            self._size: int = db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
        except BaseException:  # e.g. a full disk: no open descriptor, no half-made new file
            if db is not None:
                db.close()
            if not existed:
                remove_files(path)
            os.close(self._lock)
            raise
        self._db = db
        self._ram: deque[tuple[int, Observation]] = deque()
        self._last_seq = 0
        self._all_in_ram = self._size == 0  # no window lives on disk only
        self._refill()

    def __len__(self) -> int:
        return self._size

    @property
    def in_ram(self) -> int:
        return len(self._ram)

    def push(self, observation: Observation) -> PushOutcome:
        """Append durably; past `max_items`, delete the oldest in the same transaction."""
        dropped = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._size >= self.max_items:
                dropped = self._db.execute(
                    "DELETE FROM windows WHERE seq = (SELECT MIN(seq) FROM windows)"
                ).rowcount
            cursor = self._db.execute(
                "INSERT INTO windows (body) VALUES (?)", (json.dumps(observation.to_json()),)
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite already rolled back after e.g. a full disk
                self._db.execute("ROLLBACK")
            raise
        if dropped and self._ram:
            self._ram.popleft()
        seq = cursor.lastrowid
        assert seq is not None
        self._size += 1 - dropped
        if self._all_in_ram and len(self._ram) < self.ram_items:
            self._ram.append((seq, observation))
            self._last_seq = seq
            return PushOutcome(dropped, spilled=False)
        self._all_in_ram = False
        return PushOutcome(dropped, spilled=True)

    def peek(self, count: int) -> list[tuple[int, Observation]]:
        """The oldest `count` windows (fewer if there are fewer) with their sequence numbers."""
        if len(self._ram) < count:
            self._refill()
        return [self._ram[i] for i in range(min(count, len(self._ram)))]

    def remove_through(self, seq: int) -> None:
        """Forget every window up to and including `seq` (they were summarised)."""
        removed = self._db.execute("DELETE FROM windows WHERE seq <= ?", (seq,)).rowcount
        self._size -= removed
        while self._ram and self._ram[0][0] <= seq:
            self._ram.popleft()
        if not self._ram:
            self._refill()

    def close(self, *, delete: bool) -> None:
        try:
            self._db.close()
        finally:
            try:
                if delete:
                    remove_files(self.path)
            finally:
                os.close(self._lock)

    def _refill(self) -> None:
        """Top up RAM from disk, in order, after the last window already there."""
        if self._all_in_ram:
            return
        rows = self._db.execute(
            "SELECT seq, body FROM windows WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._last_seq, self.ram_items - len(self._ram)),
        ).fetchall()
        for seq, body in rows:
            self._ram.append((seq, Observation.from_json(json.loads(body))))
            self._last_seq = seq
        self._all_in_ram = len(self._ram) == self._size


def backlog_path(folder: Path, session_id: str) -> Path:
    """A session's file; the name starts with this process's pid, for the people who look."""
    return folder / f"{os.getpid()}-{session_id}{SUFFIX}"


def remove_files(path: Path) -> None:
    for file in (path, *(path.with_name(path.name + side) for side in SIDE_FILES)):
        file.unlink(missing_ok=True)


def hold_lock(path: Path) -> int:
    """Take the exclusive lock that says `path` is in use; the descriptor holds it.

    Fails with `BlockingIOError` when another open `Backlog` (in any process) holds it.
    """
    lock = _lock_path(path)
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:
                return descriptor
        except FileNotFoundError:
            pass  # a cleaner removed the lock file between our open and our lock: again
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)


def remove_orphans(folder: Path) -> int:
    """Delete the backlog files that no open `Backlog` holds; returns how many.

    The files of live processes sharing the folder are kept, whatever their pids.
    """
    removed = 0
    for path in folder.glob(f"*{SUFFIX}"):
        try:
            descriptor = hold_lock(path)
        except BlockingIOError:
            continue  # in use by a live process
        try:
            remove_files(path)  # the lock file last, while we hold it
            removed += 1
        finally:
            os.close(descriptor)
    return removed


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)
