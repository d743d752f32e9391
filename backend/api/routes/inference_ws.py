"""`/ws/inference`: refuses handshakes while draining, checks origin and session token, then
hands over to `InferenceSession`."""

from __future__ import annotations

import time

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse

from backend.api.deps import WsRuntimeDep
from backend.protocol.error_codes import ErrorCode
from backend.security.origins import origin_allowed
from backend.security.session_token import TokenError, verify_token
from backend.session.drain import DRAINING_MESSAGE
from backend.session.inference_session import POLICY_VIOLATION, InferenceSession

router = APIRouter(tags=["inference"])


@router.websocket("/ws/inference")
async def inference(websocket: WebSocket, runtime: WsRuntimeDep) -> None:
    if runtime.drain.draining():
        # An HTTP answer instead of the upgrade (the ASGI WebSocket denial response): a load
        # balancer's or nginx's retry, or the page's reconnect, lands on another instance.
        runtime.metrics.errors.labels(ErrorCode.DRAINING).inc()
        body = {"error": {"code": ErrorCode.DRAINING, "message": DRAINING_MESSAGE}}
        await websocket.send_denial_response(JSONResponse(body, status_code=503))
        return
    await websocket.accept()
    session = InferenceSession(websocket, runtime)
    settings = runtime.settings
    headers = websocket.headers
    if not origin_allowed(headers.get("origin"), headers.get("host"), settings.allowed_origins):
        runtime.metrics.errors.labels(ErrorCode.ORIGIN_NOT_ALLOWED).inc()
        await session.reject(
            ErrorCode.ORIGIN_NOT_ALLOWED,
            "this page's origin may not use this server; add it to CVSTACK_ALLOWED_ORIGINS, "
            'or "self" if the page is served by this server\'s own host',
            close_code=POLICY_VIOLATION,
        )
        return
    if settings.session_token_secret is None:
        await session.serve()
        return
    try:
        claims = verify_token(
            websocket.query_params.get("token"),
            settings.session_token_secret.get_secret_value(),
            now=time.time(),
        )
    except TokenError as exc:  # its codes are plain strings: the Lambda bundles that file alone
        code = ErrorCode(exc.code)
        runtime.metrics.errors.labels(code).inc()
        await session.reject(code, str(exc), close_code=POLICY_VIOLATION)
        return
    for older in runtime.live_tokens.admit(claims.nonce, session):
        await older.replaced()
    try:
        await session.serve()
    finally:
        runtime.live_tokens.leave(claims.nonce, session)
