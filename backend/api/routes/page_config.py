"""`/config.json` of the page this backend serves: `{}`, the page's defaults (local mode).

The page asks for it on every load; answering it (instead of a 404 that the page reads as
"defaults") keeps the load free of errors. A static host serves its own file (the front door
its generated one, `infra_cdk.front_door.page_config`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

router = APIRouter(tags=["page"])


@router.get("/config.json", include_in_schema=False)
async def page_config() -> JSONResponse:
    return JSONResponse({}, headers={"Cache-Control": "no-store"})
