"""What the tests share: the fixtures test/python-latch-auth.test.ts writes, and small helpers.

Run through that mocha file, which starts a real Latch and makes the accounts, clients and tokens
(`LATCH_TEST_FIXTURES` names the JSON file). Without it every test is skipped, and the mocha
file fails a run that skipped anything.
"""

import asyncio
import json
import os
import socket
import sys
import time
import unittest
from pathlib import Path
from typing import Any, Awaitable, Dict, Tuple

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parents[1]
# Test the module in this checkout, not an installed copy.
sys.path.insert(0, str(PACKAGE_DIR))

import httpx  # noqa: E402
import jwt  # noqa: E402

from latch_auth import LatchAuth, LatchAuthError  # noqa: E402

_fixtures: Dict[str, Any] = {}


def fixtures() -> Dict[str, Any]:
    if not _fixtures:
        path = os.environ.get("LATCH_TEST_FIXTURES")
        if not path:
            raise unittest.SkipTest("LATCH_TEST_FIXTURES is not set: run test/python-latch-auth.test.ts")
        with open(path, encoding="utf-8") as f:
            _fixtures.update(json.load(f))
    return _fixtures


def run(awaitable: Awaitable[Any]) -> Any:
    return asyncio.run(_wrap(awaitable))


async def _wrap(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def refusal(testcase: unittest.TestCase, awaitable: Awaitable[Any]) -> LatchAuthError:
    """The LatchAuthError the verification raises (fails the test when the token is accepted)."""
    try:
        run(awaitable)
    except LatchAuthError as err:
        return err
    testcase.fail("the token was accepted")
    raise AssertionError  # unreachable


class Clock:
    """Wall-clock time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def counted(**options: Any) -> Tuple[LatchAuth, Dict[str, int], Clock]:
    """A LatchAuth on a movable clock whose discovery, key set and introspection fetches are counted."""
    f = fixtures()
    clock = Clock()
    options.setdefault("audience", f["audience"])
    auth = LatchAuth(options.pop("issuer", f["issuer"]), options.pop("audience"), clock=clock, **options)
    calls = {"discovery": 0, "jwks": 0, "introspection": 0}
    inner = auth.fetch_json

    async def fetch_json(method: str, url: str, **kwargs: Any) -> Dict[str, Any]:
        path = httpx.URL(url).path
        if path.endswith("/openid-configuration"):
            calls["discovery"] += 1
        elif path == "/jwks":
            calls["jwks"] += 1
        elif path.endswith("/introspection"):
            calls["introspection"] += 1
        return await inner(method, url, **kwargs)

    auth.fetch_json = fetch_json  # type: ignore[method-assign]
    return auth, calls, clock


def claims_of(token: str) -> Dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def client_credentials_token(client: Dict[str, str], resource: str, scope: str) -> str:
    f = fixtures()
    res = httpx.post(f"{f['issuer']}/token", auth=(client["client_id"], client["client_secret"]), data={"grant_type": "client_credentials", "resource": resource, "scope": scope})
    if res.status_code != 200:
        raise AssertionError(f"client_credentials: {res.status_code} {res.text}")
    return res.json()["access_token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
