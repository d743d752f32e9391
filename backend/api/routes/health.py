"""`/health` (the process is alive) and `/ready` (Triton and the models answer, not draining;
what the models are)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from typing_extensions import TypedDict

from backend.api.deps import RuntimeDep
from backend.protocol.server_messages import ModelsInfo, without_paths

router = APIRouter(tags=["health"])


class Readiness(TypedDict):
    """`/ready`'s body: 200 only when `ready` and not `draining`."""

    ready: bool  # Triton and every model answer: the backend works
    draining: bool  # the drain file exists: no new sessions here (backend/session/drain.py)
    triton: dict[str, bool]
    ocr: str
    active_sessions: int
    waiting_sessions: int
    models: ModelsInfo  # the detection and pose models' sources and classes


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(runtime: RuntimeDep) -> JSONResponse:
    checks = await runtime.triton.readiness()
    ocr_problem = runtime.ocr.problem()
    working, draining = all(checks.values()), runtime.drain.draining()
    body = Readiness(
        ready=working,
        draining=draining,
        triton=checks,
        ocr=without_paths(ocr_problem) if ocr_problem else "ready",
        active_sessions=runtime.gate.active,
        waiting_sessions=runtime.gate.waiting,
        models=runtime.models,
    )
    return JSONResponse(body, status_code=200 if working and not draining else 503)
