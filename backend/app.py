"""The FastAPI application: routes plus the shared runtime built at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from backend.api.log_redaction import install_token_redaction
from backend.api.routes import health, inference_ws, metrics, page_config
from backend.api.routes.browser_model import browser_model_router
from backend.core.config import Settings
from backend.paths import FRONTEND_DIR
from backend.session.runtime import Runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the runtime (Triton client, pools, OCR) lives as long as the server."""
    config = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.start(config)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()

    install_token_redaction()  # session tokens arrive in the query, which uvicorn logs
    # The API pages describe every route to anyone; production serves none of them.
    public_docs = config.environment != "production"
    app = FastAPI(
        title="cvstack",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if public_docs else None,
        docs_url="/docs" if public_docs else None,
        redoc_url="/redoc" if public_docs else None,
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(inference_ws.router)
    if FRONTEND_DIR.is_dir():  # last, so the routes above take precedence over the page's files
        app.include_router(page_config.router)
        app.include_router(browser_model_router(config.models_dir))
        app.mount("/", StaticFiles(directory=FRONTEND_DIR, html=True), name="frontend")
    return app
