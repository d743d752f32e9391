"""One session token, one live session: a token handed to a visitor cannot fan out.

`/start` gives every visitor a token, so a token must not be enough to open many sessions at
once. At most `per_token` connections live per token; a newer connection replaces the oldest
(a page that reconnects after a network change takes over from its half-dead connection at
once, instead of waiting for it to time out).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

S = TypeVar("S")


class LiveTokens(Generic[S]):
    """The live sessions of each token, oldest first."""

    def __init__(self, per_token: int) -> None:
        if per_token < 1:
            raise ValueError("per_token must be at least 1")
        self.per_token = per_token
        self._live: dict[str, deque[S]] = {}

    def __len__(self) -> int:
        """Tokens with at least one live session."""
        return len(self._live)

    def admit(self, token_id: str, session: S) -> list[S]:
        """Register `session`; returns the older sessions it replaces (to be closed)."""
        live = self._live.setdefault(token_id, deque())
        replaced = [live.popleft() for _ in range(len(live) - self.per_token + 1)]
        live.append(session)
        return replaced

    def leave(self, token_id: str, session: S) -> None:
        """Forget `session` (it ended); a replaced session is already forgotten."""
        live = self._live.get(token_id)
        if live is None or session not in live:
            return
        live.remove(session)
        if not live:
            del self._live[token_id]
