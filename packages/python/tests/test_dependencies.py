"""The FastAPI dependencies inside an app, with and without LatchAuth.install."""

import unittest

from support import fixtures

from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from latch_auth import LatchAuth, LatchUser


def make_app(auth: LatchAuth, install: bool) -> FastAPI:
    app = FastAPI()
    if install:
        auth.install(app)

    @app.get("/me")
    async def me(user: LatchUser = Depends(auth.get_current_user)) -> dict:
        return {"id": user.id}

    # Two dependencies that both need the user: the token is verified once per request.
    @app.get("/both", dependencies=[Depends(auth.require_scopes("read"))])
    async def both(user: LatchUser = Depends(auth.current_active_user)) -> dict:
        return {"id": user.id}

    @app.get("/orgs")
    async def orgs(user: LatchUser = Depends(auth.require_org_role(org_param="org"))) -> dict:
        return {"org_id": user.org_id}

    return app


class DependenciesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.f = fixtures()

    def test_refusals_without_install_still_carry_status_challenge_and_problem_type(self) -> None:
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        with TestClient(make_app(auth, install=False)) as client:
            res = client.get("/me")
            self.assertEqual(res.status_code, 401)
            self.assertEqual(res.headers["www-authenticate"], f'Bearer realm="{self.f["audience"]}"')
            self.assertEqual(res.headers["content-type"], "application/problem+json")
            self.assertEqual(res.json(), {"detail": "an access token is required"})
            ok = client.get("/me", headers={"Authorization": f"Bearer {self.f['tokens']['ada']}"})
            self.assertEqual(ok.status_code, 200)
            self.assertEqual(ok.json(), {"id": self.f["ids"]["ada"]})

    def test_install_answers_rfc_9457_problems(self) -> None:
        auth = LatchAuth(self.f["issuer"], self.f["audience"])
        calls = {"n": 0}
        verify = auth.verify

        async def counting(*args: object, **kwargs: object) -> LatchUser:
            calls["n"] += 1
            return await verify(*args, **kwargs)  # type: ignore[arg-type]

        auth.verify = counting  # type: ignore[method-assign]
        with TestClient(make_app(auth, install=True)) as client:
            # A header that is not a Bearer token is an invalid token, not a missing one (RFC 6750 §3.1).
            res = client.get("/me", headers={"Authorization": "Basic YWRhOnNlY3JldA=="})
            self.assertEqual(res.status_code, 401)
            self.assertIn('error="invalid_token"', res.headers["www-authenticate"])
            self.assertEqual(res.headers["content-type"], "application/problem+json")
            self.assertEqual(res.headers["cache-control"], "no-store")
            self.assertEqual(res.json(), {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": "the Authorization header is not a Bearer token"})

            calls["n"] = 0
            res = client.get("/both", headers={"Authorization": f"Bearer {self.f['tokens']['ada']}"})
            self.assertEqual(res.status_code, 200, res.text)
            self.assertEqual(calls["n"], 1, "one verification per request")

            res = client.get("/both", headers={"Authorization": f"Bearer {self.f['tokens']['ada_write']}"})
            self.assertEqual(res.status_code, 403)
            self.assertIn('scope="read"', res.headers["www-authenticate"])
            self.assertEqual(res.json()["title"], "Forbidden")

            # The organization from the query parameter the dependency was told to read.
            acme = self.f["ids"]["acme"]
            headers = {"Authorization": f"Bearer {self.f['tokens']['ada_acme']}"}
            self.assertEqual(client.get(f"/orgs?org={acme}", headers=headers).json(), {"org_id": acme})
            self.assertEqual(client.get(f"/orgs?org={self.f['ids']['globex']}", headers=headers).status_code, 403)
            self.assertEqual(client.get("/orgs", headers=headers).status_code, 403)


if __name__ == "__main__":
    unittest.main()
