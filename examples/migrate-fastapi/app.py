#!/usr/bin/env python3
"""A FastAPI app after its move to Latch: the routes are the app's own, and only the import of
the user dependencies changed (``from users import …`` now names ``latch_auth``'s).

    APP_DB=app.sqlite LATCH_ISSUER=http://localhost:3000 LATCH_AUDIENCE=https://api.example.com \\
      PORT=8000 /usr/bin/python3 examples/migrate-fastapi/app.py

APP_DB is the app's own SQLite file (``seed.py`` makes one): its rows still point at the old
user, organization and site ids, which Latch's tokens now carry.
"""

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402
from fastapi import Depends, FastAPI, HTTPException  # noqa: E402

from users import User, auth, current_active_user, current_org_member, current_site, current_superuser  # noqa: E402

DB = os.environ.get("APP_DB", "app.sqlite")


def rows(sql: str, *args: Any) -> List[Dict[str, Any]]:
    # Opened per request, read-only: the example never writes, and the file may be shared with a test.
    # Blocking: the routes that call it are plain `def`, which FastAPI runs in its thread pool.
    db = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, args).fetchall()]
    finally:
        db.close()


app = FastAPI(title="An app moved to Latch")
auth.install(app)


@app.get("/health")
async def health() -> Dict[str, str]:
    return {"status": "ok"}


@app.get("/items")
def my_items(user: User = Depends(current_active_user)) -> Dict[str, Any]:
    # owner_id holds the app's user ids; Latch's `sub` is that same id.
    return {"user_id": user.id, "source": user.source, "items": [r["title"] for r in rows("SELECT title FROM items WHERE owner_id = ? ORDER BY id", user.id)]}


@app.get("/admin/items")
def all_items(user: User = Depends(current_superuser)) -> Dict[str, Any]:
    return {"items": [r["title"] for r in rows("SELECT title FROM items ORDER BY id")]}


@app.get("/orgs/{org_id}")
def organization(org_id: str, user: User = Depends(current_org_member)) -> Dict[str, Any]:
    found = rows("SELECT name FROM organizations WHERE id = ?", org_id.lower())
    if not found:
        raise HTTPException(404, "no such organization")
    return {"org_id": user.org_id, "org_role": user.org_role, "name": found[0]["name"]}


@app.post("/api/v1/modules/")
def site_modules(modules: List[Dict[str, Any]], site: User = Depends(current_site)) -> Dict[str, Any]:
    found = rows("SELECT name, organization_id FROM sites WHERE uuid = ?", site.client_id)
    if not found:
        raise HTTPException(404, "no such site")
    return {"site": found[0]["name"], "client_id": site.client_id, "org_id": site.org_id, "org_role": site.org_role, "modules": len(modules)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning")
