"""`/models/browser_detect.{json,onnx}`: the page's own detector, from the models folder.

The page fetches it beside itself when a cold start begins (`frontend/js/browser_detector.js`);
in production the front door serves the same two files from the model store. Nothing else of
the models folder is served.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from backend.model_prep.browser_model import BROWSER_FILE, DESCRIPTOR_FILE

MEDIA_TYPES = {DESCRIPTOR_FILE: "application/json", BROWSER_FILE: "application/octet-stream"}


def browser_model_router(models_dir: Path) -> APIRouter:
    """The two routes, reading `models_dir` on each request (a new `models prepare` shows)."""
    router = APIRouter(tags=["page"])

    @router.get("/models/{name}", include_in_schema=False)
    async def browser_model(name: str) -> FileResponse:
        path = models_dir / name
        if name not in MEDIA_TYPES or not path.is_file():
            raise HTTPException(404, f"no {name} here; run `cvstack models prepare`")
        return FileResponse(
            path, media_type=MEDIA_TYPES[name], headers={"Cache-Control": "no-cache"}
        )

    return router
