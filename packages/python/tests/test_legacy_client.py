"""legacy_client: a machine's old id/secret headers checked against Latch (client credentials)."""

import unittest
from typing import Dict

from support import counted, fixtures, free_port

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from latch_auth import LatchAuth, LatchAuthError, LatchUser


def make_app(auth: LatchAuth, **options: object) -> FastAPI:
    app = FastAPI()
    auth.install(app)
    site = auth.legacy_client("X-Site-UUID", "X-API-Token", **options)  # type: ignore[arg-type]

    @app.post("/modules")
    async def modules(client: LatchUser = Depends(site)) -> Dict[str, object]:
        return {"id": client.id, "client_id": client.client_id, "org_id": client.org_id, "org_role": client.org_role, "source": client.source}

    return app


class LegacyClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.f = fixtures()
        cls.site = cls.f["clients"]["site"]
        cls.headers = {"X-Site-UUID": cls.site["client_id"], "X-API-Token": cls.site["client_secret"]}

    def test_the_old_headers_give_the_client_and_its_organization(self) -> None:
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        with TestClient(make_app(auth)) as client:
            res = client.post("/modules", headers=self.headers)
            self.assertEqual(res.status_code, 200, res.text)
            self.assertEqual(res.json(), {"id": self.site["client_id"], "client_id": self.site["client_id"], "org_id": self.f["ids"]["acme"], "org_role": "member", "source": "legacy_client"})

    def test_a_client_in_no_organization_and_without_the_organizations_scope_is_still_accepted(self) -> None:
        machine = self.f["clients"]["machine"]
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        with TestClient(make_app(auth)) as client:
            res = client.post("/modules", headers={"X-Site-UUID": machine["client_id"], "X-API-Token": machine["client_secret"]})
            self.assertEqual(res.status_code, 200, res.text)
            self.assertEqual(res.json()["client_id"], machine["client_id"])
            self.assertIsNone(res.json()["org_id"])

    def test_missing_or_wrong_headers_are_a_401_with_a_challenge(self) -> None:
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        with TestClient(make_app(auth)) as client:
            cases = [
                {},
                {"X-Site-UUID": self.site["client_id"]},
                {"X-API-Token": self.site["client_secret"]},
                {"X-Site-UUID": self.site["client_id"], "X-API-Token": self.site["client_secret"] + "x"},
                {"X-Site-UUID": "no-such-site", "X-API-Token": self.site["client_secret"]},
                {"X-Site-UUID": self.site["client_id"], "X-API-Token": "x" * 5000},
                # A client that is not one of this API's.
                {"X-Site-UUID": self.f["clients"]["ops"]["client_id"], "X-API-Token": self.f["clients"]["ops"]["client_secret"]},
            ]
            for headers in cases:
                res = client.post("/modules", headers=headers)
                self.assertEqual(res.status_code, 401, f"{list(headers)}: {res.text}")
                self.assertTrue(res.headers["www-authenticate"].startswith("LegacyClient "), res.headers["www-authenticate"])
                self.assertIn('id_header="X-Site-UUID"', res.headers["www-authenticate"])
                self.assertEqual(res.headers["content-type"], "application/problem+json")
                self.assertEqual(res.json()["status"], 401)

    def test_answers_are_cached_for_at_most_sixty_seconds_under_a_key_that_is_not_the_secret(self) -> None:
        auth, _, clock = counted()
        token_calls = {"n": 0}
        inner = auth.fetch_json

        async def fetch_json(method: str, url: str, **kwargs: object) -> Dict[str, object]:
            if url.endswith("/token"):
                token_calls["n"] += 1
            return await inner(method, url, **kwargs)  # type: ignore[arg-type]

        auth.fetch_json = fetch_json  # type: ignore[method-assign]
        dependency = auth.legacy_client("X-Site-UUID", "X-API-Token", cache_seconds=3600)
        app = FastAPI()
        auth.install(app)

        @app.get("/site")
        async def site(client: LatchUser = Depends(dependency)) -> Dict[str, str]:
            return {"id": client.id}

        with TestClient(app) as client:
            self.assertEqual(client.get("/site", headers=self.headers).status_code, 200)
            self.assertEqual(client.get("/site", headers=self.headers).status_code, 200)
            self.assertEqual(token_calls["n"], 1, "the second request is answered from the cache")
            wrong = {**self.headers, "X-API-Token": "wrong"}
            self.assertEqual(client.get("/site", headers=wrong).status_code, 401)
            self.assertEqual(client.get("/site", headers=wrong).status_code, 401)
            self.assertEqual(token_calls["n"], 2, "a refused pair is cached too")
            # cache_seconds above 60 is capped at 60.
            clock.offset = 61
            self.assertEqual(client.get("/site", headers=self.headers).status_code, 200)
            self.assertEqual(token_calls["n"], 3)
        # The cache lives in the dependency's closure: its keys are HMACs, never the secret.
        cells = [c.cell_contents for c in dependency.__closure__ or ()]
        caches = [c for c in cells if isinstance(c, dict)]
        self.assertEqual(len(caches), 1)
        self.assertEqual(len(caches[0]), 2)
        for k in caches[0]:
            self.assertRegex(k, r"^[0-9a-f]{64}$")
            self.assertNotIn(self.site["client_secret"], k)
            self.assertNotIn(self.site["client_id"], k)

    def test_latch_unreachable_is_a_503(self) -> None:
        auth = LatchAuth(f"http://127.0.0.1:{free_port()}", self.f["audience"], timeout=2)
        with TestClient(make_app(auth)) as client:
            res = client.post("/modules", headers=self.headers)
            self.assertEqual(res.status_code, 503, res.text)
            self.assertNotIn("www-authenticate", res.headers)
            self.assertEqual(res.json(), {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "the authorization server could not be reached"})

    def test_a_token_that_does_not_verify_is_a_503_that_is_not_cached(self) -> None:
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        verify = auth.verify
        failures = {"left": 1}

        async def failing_once(token: str) -> LatchUser:
            if failures["left"]:
                failures["left"] -= 1
                raise LatchAuthError(401, self.f["audience"], "invalid_token", "no key matches the token's kid")
            return await verify(token)

        auth.verify = failing_once  # type: ignore[method-assign]
        with TestClient(make_app(auth, cache_seconds=60)) as client:
            res = client.post("/modules", headers=self.headers)
            self.assertEqual(res.status_code, 503, res.text)
            self.assertIn("does not verify", res.json()["detail"])
            self.assertNotIn("www-authenticate", res.headers)
            again = client.post("/modules", headers=self.headers)
            self.assertEqual(again.status_code, 200, "the failure was not cached as a refusal")

    def test_two_header_names_are_required(self) -> None:
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        with self.assertRaises(ValueError):
            auth.legacy_client("X-Token", "x-token")
        with self.assertRaises(ValueError):
            auth.legacy_client("", "X-API-Token")
