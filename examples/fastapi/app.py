#!/usr/bin/env python3
"""A FastAPI app that accepts Latch access tokens through latch_auth.

Run from the repository root:

    LATCH_ISSUER=http://localhost:3000 LATCH_AUDIENCE=https://api.example.com PORT=8000 \\
      python3 examples/fastapi/app.py

Optional: LATCH_INTROSPECTION_CLIENT_ID / LATCH_INTROSPECTION_CLIENT_SECRET (a client of this API at
Latch), so personal access tokens (lat_…) are accepted through introspection.
"""

import json
import os
import sys
from pathlib import Path

DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_PACKAGES = "python3-fastapi python3-uvicorn python3-jwt python3-httpx python3-cryptography"


def _ensure_dependencies() -> None:
    """Debian's packages belong to /usr/bin/python3: under another interpreter (pyenv, a venv), run that one."""
    try:
        import cryptography  # noqa: F401
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import jwt  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as missing:
        here = os.path.realpath(sys.executable) if sys.executable else ""
        if __name__ == "__main__" and os.path.exists(DEBIAN_PYTHON) and os.path.realpath(DEBIAN_PYTHON) != here:
            os.execv(DEBIAN_PYTHON, [DEBIAN_PYTHON, *sys.argv])
        sys.exit(f"fastapi example: the Python module {missing.name!r} is missing; install {DEBIAN_PACKAGES} (apt-get install) or: pip install ./packages/python uvicorn")


_ensure_dependencies()

# Run from a checkout: the latch_auth next door, without installing it.
_PACKAGE_DIR = Path(__file__).resolve().parents[2] / "packages" / "python"
if (_PACKAGE_DIR / "latch_auth").is_dir():
    sys.path.insert(0, str(_PACKAGE_DIR))

import uvicorn  # noqa: E402
from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect  # noqa: E402

from latch_auth import LatchAuth, LatchUser  # noqa: E402


def create_app(auth: LatchAuth) -> FastAPI:
    app = FastAPI(title="Latch FastAPI example")
    auth.install(app)  # refusals as RFC 9457 problem+json

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    # Every key is always there, null when the token does not carry the claim.
    @app.get("/me")
    async def me(user: LatchUser = Depends(auth.current_user)) -> dict:
        return {
            "id": user.id,
            "email": user.email,
            "is_superuser": user.is_superuser,
            "roles": user.roles,
            "scopes": user.scopes,
            "org_id": user.org_id,
            "org_role": user.org_role,
        }

    # The token says who calls; which rows are theirs is the app's own check
    # (e.g. select(Item).where(Item.owner_id == user.id)).
    @app.get("/items")
    async def items(user: LatchUser = Depends(auth.current_active_user)) -> dict:
        return {"owner_id": user.id}

    # is_superuser is issued with scope `roles`: a token asked without it is refused here.
    @app.get("/admin")
    async def admin(user: LatchUser = Depends(auth.current_superuser)) -> dict:
        return {"ok": True}

    @app.get("/scoped")
    async def scoped(user: LatchUser = Depends(auth.require_scopes("read"))) -> dict:
        return {"ok": True}

    # An organization token (authorization request with `organization=<id>`) carries org_id and
    # the caller's org_role there.
    @app.get("/orgs/{org_id}/settings")
    async def org_settings(org_id: str, user: LatchUser = Depends(auth.require_org_role("owner", "admin"))) -> dict:
        return {"org_id": user.org_id, "org_role": user.org_role}

    # Failures never reach this function: websocket_user accepts and closes with 1008.
    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: LatchUser = Depends(auth.websocket_user)) -> None:
        await websocket.accept()
        await websocket.send_text(json.dumps({"id": user.id}))
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass

    return app


def main() -> None:
    issuer = os.environ.get("LATCH_ISSUER", "")
    audience = os.environ.get("LATCH_AUDIENCE", "")
    port_text = os.environ.get("PORT", "8000")
    if not issuer or not audience or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        sys.exit("fastapi example: set LATCH_ISSUER (Latch's URL), LATCH_AUDIENCE (this API's resource identifier) and PORT")
    client_id = os.environ.get("LATCH_INTROSPECTION_CLIENT_ID")
    client_secret = os.environ.get("LATCH_INTROSPECTION_CLIENT_SECRET")
    # Personal access tokens (lat_…) are not JWTs: only Latch can say whether they are live (RFC 7662).
    introspection = (client_id, client_secret) if client_id and client_secret else None
    app = create_app(LatchAuth(issuer, audience, introspection_client=introspection))
    uvicorn.run(app, host="127.0.0.1", port=int(port_text), log_level="info")


if __name__ == "__main__":
    main()
