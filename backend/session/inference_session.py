"""One `/ws/inference` connection: protocol state machine, admission, frame streaming.

Three tasks run per connection: the receiver (client messages), the pinger and, between
`start` and `stop`, the streamer (admission, then one frame in flight at a time). Disconnect
or `stop` cancels what the session started; nothing outlives the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.websockets import WebSocket, WebSocketDisconnect

from backend.pipeline.jpeg import FrameRejectedError
from backend.pipeline.multimodal import SessionPipeline
from backend.protocol.client_messages import (
    InitMessage,
    InitParams,
    OcrRequestMessage,
    ProtocolError,
    StartMessage,
    StopMessage,
    parse_client_message,
)
from backend.protocol.error_codes import ErrorCode
from backend.protocol.server_messages import (
    ServerMessage,
    error_message,
    inference_message,
    queue_status,
)
from backend.session.admission import AdmissionTimeoutError
from backend.session.drain import DRAINING_MESSAGE
from backend.session.frame_queue import LatestFrameQueue, QueuedFrame
from backend.session.message_rate import MessageRate
from backend.session.result_pace import ResultPace
from backend.session.runtime import Runtime
from backend.summaries.backlog import Backlog, backlog_path, remove_files
from backend.summaries.summarizer import Summarizer, SummaryOutlet

log = logging.getLogger(__name__)
FPS_WINDOW = 30
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
REPLACE_WAIT_S = 1.0


class _ClientGoneError(Exception):
    """The client went away."""


class _DrainingError(Exception):
    """The server started draining while this session waited for a slot."""


class InferenceSession:
    """Serves one WebSocket connection from accept to close."""

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.settings = runtime.settings
        self.id = uuid.uuid4().hex[:12]
        self.params: InitParams | None = None
        self.frames = LatestFrameQueue(self.settings.frame_queue_size)
        self._send_lock = asyncio.Lock()
        self._streamer: asyncio.Task[None] | None = None
        self._ocr_requested = False
        self._result_times: deque[float] = deque(maxlen=FPS_WINDOW)
        rate = self.settings.max_text_messages_per_s
        self._text_rate = MessageRate(rate, burst=max(1, round(2 * rate)))

    async def serve(self) -> None:
        """Run the session until the client disconnects or a fatal error closes it."""
        metrics = self.runtime.metrics
        metrics.connections.inc()
        pinger = asyncio.create_task(self._ping_forever())
        try:
            gate = self.runtime.gate
            await self.send(queue_status("waiting", gate.active, gate.waiting, session_id=self.id))
            await self.send({"type": "models", "data": self.runtime.models})
            await self._receive_forever()
        except _ClientGoneError:
            pass
        finally:
            try:
                pinger.cancel()
                await self._stop_streaming()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
            finally:
                metrics.connections.dec()

    async def send(self, message: ServerMessage) -> None:
        text = json.dumps(message, separators=(",", ":"))
        async with self._send_lock:
            try:
                await self.ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise _ClientGoneError from exc

    async def reject(self, code: ErrorCode, message: str, *, close_code: int) -> None:
        """Send a fatal error and close the connection."""
        with contextlib.suppress(_ClientGoneError):
            await self.send(error_message(code, message, fatal=True))
        with contextlib.suppress(RuntimeError, OSError):
            await self.ws.close(code=close_code, reason=code)

    async def replaced(self) -> None:
        """A newer connection took this session's token: end this one, briefly waiting."""
        self.runtime.metrics.errors.labels(ErrorCode.SESSION_REPLACED).inc()
        with contextlib.suppress(TimeoutError):  # a stalled client meets its send deadline
            await asyncio.wait_for(
                self.reject(
                    ErrorCode.SESSION_REPLACED,
                    "a newer connection uses this session token; one token serves one "
                    "session at a time (CVSTACK_SESSIONS_PER_TOKEN)",
                    close_code=POLICY_VIOLATION,
                ),
                REPLACE_WAIT_S,
            )

    async def _receive_forever(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise _ClientGoneError
            if message.get("bytes") is not None:
                await self._on_frame(message["bytes"])
            elif message.get("text") is not None:
                await self._on_text(message["text"])

    async def _on_text(self, text: str) -> None:
        if not self._text_rate.allow():
            self.runtime.metrics.errors.labels(ErrorCode.TOO_MANY_MESSAGES).inc()
            await self.reject(
                ErrorCode.TOO_MANY_MESSAGES,
                f"over {self.settings.max_text_messages_per_s:g} text messages per second; "
                "send control messages only when something changes",
                close_code=POLICY_VIOLATION,
            )
            raise _ClientGoneError
        try:
            parsed = parse_client_message(text, self.settings.max_text_bytes)
        except ProtocolError as exc:
            await self._error(exc.code, str(exc))
            return
        if isinstance(parsed, InitMessage):
            if self._streaming():
                await self._error(
                    ErrorCode.ALREADY_STARTED, "send 'stop' before changing the params"
                )
                return
            self.params = parsed.params
        elif isinstance(parsed, StartMessage):
            if self.params is None:
                await self._error(ErrorCode.INIT_REQUIRED, "send 'init' with params before 'start'")
            elif self._streaming():
                await self._error(ErrorCode.ALREADY_STARTED, "this session is already started")
            else:
                self._streamer = asyncio.create_task(self._stream(self.params))
        elif isinstance(parsed, StopMessage):
            if not self._streaming():
                await self._error(ErrorCode.NOT_STARTED, "'stop' before 'start'; nothing to stop")
                return
            await self._stop_streaming()
            await self.send(
                queue_status("finished", self.runtime.gate.active, self.runtime.gate.waiting)
            )
        elif isinstance(parsed, OcrRequestMessage):
            self._ocr_requested = True

    async def _on_frame(self, data: bytes) -> None:
        if not self._streaming():
            await self._error(ErrorCode.NOT_STARTED, "send 'init' and 'start' before frames")
            return
        if len(data) > self.settings.max_frame_bytes:
            await self._error(
                ErrorCode.FRAME_TOO_LARGE,
                f"frames are limited to {self.settings.max_frame_bytes} bytes; send smaller JPEGs",
            )
            return
        if self.frames.put(QueuedFrame(data, time.monotonic())):
            self.runtime.metrics.dropped_frames.inc()

    async def _stream(self, params: InitParams) -> None:
        """Wait for a slot, then process the latest frame whenever the previous one is done."""
        gate = self.runtime.gate
        metrics = self.runtime.metrics
        metrics.waiting_changed(+1)
        try:
            await gate.acquire(
                self._send_waiting,
                max_wait_s=self.settings.max_wait_s,
                update_s=self.settings.queue_status_interval_s,
            )
        except AdmissionTimeoutError:
            metrics.errors.labels(ErrorCode.SERVER_BUSY).inc()
            await self.reject(
                ErrorCode.SERVER_BUSY,
                f"no processing slot became free within {self.settings.max_wait_s:.0f} s; "
                "try again later: reconnect (the page does so by itself), and in a fleet the "
                "load balancer may place the new session on another instance",
                close_code=TRY_AGAIN_LATER,
            )
            return
        except _DrainingError:
            metrics.errors.labels(ErrorCode.DRAINING).inc()
            await self.reject(ErrorCode.DRAINING, DRAINING_MESSAGE, close_code=TRY_AGAIN_LATER)
            return
        finally:
            metrics.waiting_changed(-1)
        metrics.active_sessions.inc()
        pipeline = SessionPipeline(self.runtime.pipeline, params)
        summarizer: Summarizer | None = None
        try:
            if params.use_langchain:
                summarizer = await self._start_summarizer(params)
            await self.send(queue_status("running", gate.active, gate.waiting))
            frame_idx = 0
            pace = ResultPace(self.settings.max_results_per_s)
            while True:
                await pace.wait()
                frame = await self.frames.get()
                pace.started()
                await self._process(pipeline, frame, frame_idx, summarizer)
                frame_idx += 1
        except Exception as exc:  # a bug must not leave the client waiting in silence
            if not isinstance(exc, _ClientGoneError):
                log.exception("session %s: streaming failed", self.id)
                self.runtime.metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
                with contextlib.suppress(_ClientGoneError):
                    await self.send(error_message(
                        ErrorCode.INTERNAL_ERROR, "processing stopped after an internal error; "
                        "send 'start' to resume"))  # fmt: skip
        finally:
            try:
                await self._close_quietly("pipeline", pipeline.aclose)
                if summarizer is not None and not await self._close_quietly(
                    "summaries", summarizer.aclose
                ):
                    await self._remove_backlog(summarizer.backlog.path)
            finally:  # even when cancelled while closing: the slot is never kept
                metrics.active_sessions.dec()
                gate.release()

    async def _close_quietly(self, part: str, aclose: Callable[[], Awaitable[None]]) -> bool:
        """Close one part of the session; a failure is logged (False), never stops the rest."""
        try:
            await aclose()
        except Exception:
            log.exception("session %s: closing the %s failed", self.id, part)
            self.runtime.metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
            return False
        return True

    async def _remove_backlog(self, path: Path) -> None:
        try:
            await self.runtime.loop.run_in_executor(self.runtime.summary_pool, remove_files, path)
        except OSError:
            log.exception("session %s: could not delete %s", self.id, path)

    async def _process(
        self,
        pipeline: SessionPipeline,
        frame: QueuedFrame,
        frame_idx: int,
        summarizer: Summarizer | None,
    ) -> None:
        requested, self._ocr_requested = self._ocr_requested, False
        try:
            outputs = await pipeline.process(frame.data, frame_idx, ocr_requested=requested)
        except FrameRejectedError as exc:
            await self._error(exc.code, str(exc))
            return
        now = time.monotonic()
        self._result_times.append(now)
        latency_s = now - frame.received_at
        message = inference_message(
            outputs,
            frame_idx=frame_idx,
            fps=round(self._fps(), 2),
            latency_ms=round(latency_s * 1000, 2),
            dropped_frames=self.frames.dropped,
        )
        await self.send(message)
        self.runtime.metrics.result_sent(latency_s)
        if summarizer is not None:
            summarizer.observe(outputs)

    async def _start_summarizer(self, params: InitParams) -> Summarizer | None:
        """Start this run's summariser; its backlog file lives until `stop` or disconnect."""
        settings = self.settings
        path = backlog_path(settings.summary_dir, self.id)
        open_backlog = functools.partial(
            Backlog,
            path,
            ram_items=settings.summary_ram_items,
            max_items=settings.summary_max_items,
        )
        opening = self.runtime.loop.run_in_executor(self.runtime.summary_pool, open_backlog)
        try:
            backlog = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the file is still being made: delete it once it is
            opening.add_done_callback(_discard_backlog)
            raise
        except (OSError, sqlite3.Error) as exc:
            log.warning("session %s: no summary backlog at %s: %s", self.id, path, exc)
            reason = (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__
            await self._error(  # the path stays in the server's log, not in the client's view
                ErrorCode.SUMMARIES_UNAVAILABLE,
                f"LLM summaries are off for this run: the server cannot write its summary "
                f"backlog ({reason}; check CVSTACK_SUMMARY_DIR); the other stages run as requested",
            )
            return None
        try:
            summarizer = Summarizer(
                settings=settings,
                backlog=backlog,
                io_pool=self.runtime.summary_pool,
                model=self.runtime.chat_model,
                outlet=SummaryOutlet(
                    self._send_summary, self._send_drop_notice, self._send_delay_notice
                ),
                metrics=self.runtime.metrics,
                system_prompt=params.system_prompt,
            )
            summarizer.start()
        except BaseException:
            await self.runtime.loop.run_in_executor(
                self.runtime.summary_pool, functools.partial(backlog.close, delete=True)
            )
            raise
        return summarizer

    async def _send_summary(self, text: str) -> None:
        with contextlib.suppress(_ClientGoneError):  # the receiver ends the session
            await self.send({"type": "llm_summary", "data": text})

    async def _send_drop_notice(self, dropped: int) -> None:
        message = (
            f"the LLM is behind: {dropped} oldest observation windows were dropped so far to "
            f"keep the backlog within {self.settings.summary_max_items} windows; "
            "summaries go on with newer windows"
        )
        with contextlib.suppress(_ClientGoneError):
            await self._error(ErrorCode.SUMMARIES_DROPPED, message)

    async def _send_delay_notice(self, message: str) -> None:
        with contextlib.suppress(_ClientGoneError):
            await self._error(ErrorCode.SUMMARIES_DELAYED, message)

    async def _stop_streaming(self) -> None:
        streamer, self._streamer = self._streamer, None
        if streamer is None:
            return
        streamer.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError, _ClientGoneError):
                await streamer
        except Exception:  # it released its slot on the way out; the cause goes to the log
            log.exception("session %s: the streamer failed", self.id)
            self.runtime.metrics.errors.labels(ErrorCode.INTERNAL_ERROR).inc()
        self.frames.clear()

    async def _send_waiting(self, position: int) -> None:
        """Each queue update; while draining nobody waits here (the gate drops the ticket)."""
        if self.runtime.drain.draining():
            raise _DrainingError
        gate = self.runtime.gate
        await self.send(queue_status("waiting", gate.active, gate.waiting, position=position))

    async def _ping_forever(self) -> None:
        with contextlib.suppress(_ClientGoneError):
            while True:
                await asyncio.sleep(self.settings.ping_interval_s)
                await self.send({"type": "ping"})

    async def _error(self, code: ErrorCode, message: str) -> None:
        self.runtime.metrics.errors.labels(code).inc()
        await self.send(error_message(code, message))

    def _streaming(self) -> bool:
        return self._streamer is not None and not self._streamer.done()

    def _fps(self) -> float:
        times = self._result_times
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def _discard_backlog(opening: asyncio.Future[Backlog]) -> None:
    """Close and delete a backlog whose session ended while the file was being opened."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close(delete=True)
