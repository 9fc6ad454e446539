"""examples/fastapi/app.py as users start it (`python3 examples/fastapi/app.py`), over real HTTP and WebSocket."""

import asyncio
import json
import os
import subprocess
import tempfile
import time
import unittest
from typing import Any, Dict, Optional

from support import REPO_ROOT, client_credentials_token, fixtures, free_port

import httpx
import websockets
from websockets.exceptions import ConnectionClosed


class ExampleAppTest(unittest.TestCase):
    process: Optional[subprocess.Popen] = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.f = fixtures()
        cls.tokens = cls.f["tokens"]
        cls.ids = cls.f["ids"]
        cls.port = free_port()
        cls.base = f"http://127.0.0.1:{cls.port}"
        cls.log = tempfile.TemporaryFile()
        introspection = cls.f["clients"]["introspection"]
        env = {
            **os.environ,
            "LATCH_ISSUER": cls.f["issuer"],
            "LATCH_AUDIENCE": cls.f["audience"],
            "PORT": str(cls.port),
            "LATCH_INTROSPECTION_CLIENT_ID": introspection["client_id"],
            "LATCH_INTROSPECTION_CLIENT_SECRET": introspection["client_secret"],
        }
        # `python3` from PATH, as the README says: when it is not Debian's interpreter (pyenv, a
        # venv without FastAPI), the app re-executes itself with /usr/bin/python3.
        cls.process = subprocess.Popen(["python3", "examples/fastapi/app.py"], cwd=REPO_ROOT, env=env, stdout=cls.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            if cls.process.poll() is not None:
                raise AssertionError(f"the example exited with {cls.process.returncode}: {cls.output()}")
            try:
                if httpx.get(f"{cls.base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"the example did not answer /health: {cls.output()}")
            time.sleep(0.1)

    @classmethod
    def output(cls) -> str:
        cls.log.seek(0)
        return cls.log.read().decode(errors="replace")

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.process is not None and cls.process.poll() is None:
            cls.process.terminate()
            try:
                cls.process.wait(10)
            except subprocess.TimeoutExpired:
                cls.process.kill()
                cls.process.wait()
        output = cls.output()
        cls.log.close()
        if os.environ.get("LATCH_TEST_LOG"):
            print(output)
        # Every refusal was an answer, never an exception in the app.
        if "Traceback" in output or "Exception in ASGI application" in output:
            raise AssertionError(f"the example logged an exception: {output}")

    def get(self, path: str, token: Optional[str] = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.base}{path}", headers=headers)

    def assert_refused(self, res: httpx.Response, status: int, challenge_part: str) -> Dict[str, Any]:
        self.assertEqual(res.status_code, status, res.text)
        self.assertTrue(res.headers["www-authenticate"].startswith(f'Bearer realm="{self.f["audience"]}"'), res.headers["www-authenticate"])
        self.assertIn(challenge_part, res.headers["www-authenticate"])
        self.assertEqual(res.headers["content-type"], "application/problem+json")
        body = res.json()
        self.assertEqual(body["type"], "about:blank")
        self.assertEqual(body["title"], "Forbidden" if status == 403 else "Unauthorized")
        self.assertEqual(body["status"], status)
        self.assertIsInstance(body["detail"], str)
        return body

    def test_health_needs_no_token(self) -> None:
        res = self.get("/health")
        self.assertEqual(res.status_code, 200)
        self.assertEqual(res.json(), {"status": "ok"})

    def test_me_has_all_seven_keys(self) -> None:
        res = self.get("/me", self.tokens["ada"])
        self.assertEqual(res.status_code, 200, res.text)
        self.assertEqual(res.json(), {"id": self.ids["ada"], "email": "ada@example.test", "is_superuser": False, "roles": ["support"], "scopes": ["read"], "org_id": None, "org_role": None})
        org = self.get("/me", self.tokens["ada_acme"]).json()
        self.assertEqual((org["org_id"], org["org_role"]), (self.ids["acme"], "owner"))
        self.assertIs(self.get("/me", self.tokens["root"]).json()["is_superuser"], True)
        # A machine token: no email, no organization, is_superuser still a boolean.
        machine = self.f["clients"]["machine"]
        body = self.get("/me", client_credentials_token(machine, self.f["audience"], "read")).json()
        self.assertEqual(sorted(body), sorted(["id", "email", "is_superuser", "roles", "scopes", "org_id", "org_role"]))
        self.assertEqual((body["id"], body["email"], body["is_superuser"], body["org_id"]), (machine["client_id"], None, False, None))

    def test_refusals_are_problem_documents_with_the_challenge(self) -> None:
        none = self.get("/me")
        self.assert_refused(none, 401, "")
        self.assertEqual(none.headers["www-authenticate"], f'Bearer realm="{self.f["audience"]}"')
        for bad in ("junk", self.tokens["other"], self.tokens["id_token"], self.tokens["short"], self.tokens["ada"][:-4] + "AAAA"):
            self.assert_refused(self.get("/me", bad), 401, 'error="invalid_token"')
        self.assert_refused(httpx.get(f"{self.base}/items", headers={"Authorization": "Token abc"}), 401, 'error="invalid_token"')

    def test_items_see_the_callers_id(self) -> None:
        self.assertEqual(self.get("/items", self.tokens["ada"]).json(), {"owner_id": self.ids["ada"]})
        self.assertEqual(self.get("/items", self.tokens["root"]).json(), {"owner_id": self.ids["root"]})
        self.assert_refused(self.get("/items"), 401, "")

    def test_admin_is_for_superusers(self) -> None:
        self.assertEqual(self.get("/admin", self.tokens["root"]).status_code, 200)
        body = self.assert_refused(self.get("/admin", self.tokens["ada"]), 403, 'error="insufficient_scope"')
        self.assertIn("superuser", body["detail"])
        self.assertNotIn("scope=", self.get("/admin", self.tokens["ada"]).headers["www-authenticate"].replace("insufficient_scope", ""))

    def test_scoped_needs_read(self) -> None:
        self.assertEqual(self.get("/scoped", self.tokens["ada"]).status_code, 200)
        self.assert_refused(self.get("/scoped", self.tokens["ada_write"]), 403, 'error="insufficient_scope", error_description="the token lacks a required scope", scope="read"')

    def test_org_settings_need_owner_or_admin_of_that_org(self) -> None:
        acme, globex = self.ids["acme"], self.ids["globex"]
        res = self.get(f"/orgs/{acme}/settings", self.tokens["ada_acme"])
        self.assertEqual(res.status_code, 200, res.text)
        self.assertEqual(res.json(), {"org_id": acme, "org_role": "owner"})
        self.assert_refused(self.get(f"/orgs/{globex}/settings", self.tokens["ada_acme"]), 403, 'error="insufficient_scope"')
        self.assert_refused(self.get(f"/orgs/{globex}/settings", self.tokens["ada_globex"]), 403, 'error="insufficient_scope"')
        self.assert_refused(self.get(f"/orgs/{acme}/settings", self.tokens["ada"]), 403, 'error="insufficient_scope"')

    def test_personal_access_token_through_introspection(self) -> None:
        res = self.get("/me", self.f["pat_example"]["token"])
        self.assertEqual(res.status_code, 200, res.text)
        self.assertEqual((res.json()["id"], res.json()["scopes"]), (self.ids["ada"], ["read"]))

    def test_websocket(self) -> None:
        url = f"ws://127.0.0.1:{self.port}/ws"

        async def first_frame(uri: str, headers: Optional[Dict[str, str]] = None) -> Any:
            async with websockets.connect(uri, extra_headers=headers or {}, open_timeout=10) as ws:
                return await asyncio.wait_for(ws.recv(), 10)

        async def close_code(uri: str) -> int:
            async with websockets.connect(uri, open_timeout=10) as ws:
                try:
                    frame = await asyncio.wait_for(ws.recv(), 10)
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else -1
                raise AssertionError(f"the socket sent {frame!r}")

        token = self.tokens["ada"]
        for uri, headers in ((f"{url}?token={token}", None), (f"{url}?access_token={token}", None), (url, {"Authorization": f"Bearer {token}"})):
            frame = asyncio.run(first_frame(uri, headers))
            self.assertIsInstance(frame, str)
            self.assertEqual(json.loads(frame), {"id": self.ids["ada"]})

        # Accepted, then closed with 1008, whatever is wrong with the token.
        for uri in (url, f"{url}?token=junk", f"{url}?token={self.tokens['id_token']}", f"{url}?token={self.tokens['other']}"):
            self.assertEqual(asyncio.run(close_code(uri)), 1008, uri)

    def test_starting_without_configuration_is_one_line(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATCH_")}
        done = subprocess.run(["python3", "examples/fastapi/app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(done.stderr.strip().count("\n"), 0, done.stderr)
        self.assertIn("LATCH_ISSUER", done.stderr)


if __name__ == "__main__":
    unittest.main()
