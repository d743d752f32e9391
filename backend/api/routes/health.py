"""`/health` (the process is alive) and `/ready` (Triton and the models answer)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.api.deps import RuntimeDep
from backend.protocol.server_messages import without_paths

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(runtime: RuntimeDep) -> JSONResponse:
    checks = await runtime.triton.readiness()
    ocr_problem = runtime.ocr.problem()
    body = {
        "ready": all(checks.values()),
        "triton": checks,
        "ocr": without_paths(ocr_problem) if ocr_problem else "ready",
        "active_sessions": runtime.gate.active,
        "waiting_sessions": runtime.gate.waiting,
    }
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
