"""A local webhook receiver for demos and tests: verifies each touch's HMAC signature, prints it, keeps it.

``GET /received`` lists what arrived (newest last), each with ``signature_valid``.
"""

import hashlib
import hmac
import os
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def signature_valid(secret: str, header: str, body: bytes) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, parts.get("v1", ""))


def create_sink(secret: str, status_code: int = 200) -> FastAPI:
    app = FastAPI(title="SCRM webhook sink")
    received: list[dict[str, Any]] = []

    @app.post("/hooks/{name}")
    async def receive(name: str, request: Request) -> JSONResponse:
        body = await request.body()
        entry = {
            "hook": name,
            "touch_key": request.headers.get("x-scrm-touch-key"),
            "signature": request.headers.get("x-scrm-signature", ""),
            "signature_valid": signature_valid(secret, request.headers.get("x-scrm-signature", ""), body),
            "payload": orjson.loads(body) if body else None,
        }
        received.append(entry)
        print(f"webhook received: {orjson.dumps(entry).decode()}", flush=True)
        return JSONResponse({"ok": True}, status_code=status_code)

    @app.get("/received")
    async def list_received() -> list[dict[str, Any]]:
        return received

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app() -> FastAPI:
    """ASGI factory reading ``SCRM_SINK_SECRET``."""
    return create_sink(os.environ.get("SCRM_SINK_SECRET", ""))
