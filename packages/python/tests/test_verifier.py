"""LatchAuth against a real Latch: the token checks, key rotation, introspection and requirements."""

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support import claims_of, client_credentials_token, counted, fixtures, refusal, run

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from latch_auth import LatchAuth


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def foreign_token(kid: str, claims: dict) -> str:
    """A token with Latch's claims but signed by a key Latch never published."""
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"})


class VerifierTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.f = fixtures()
        cls.tokens = cls.f["tokens"]
        cls.ids = cls.f["ids"]

    def test_valid_token_gives_the_user(self) -> None:
        auth, calls, _ = counted()
        user = run(auth.verify(self.tokens["ada"], scopes=["read"]))
        self.assertEqual(user.id, self.ids["ada"])
        self.assertEqual(user.email, "ada@example.test")
        self.assertIs(user.is_verified, True)
        self.assertIs(user.is_active, True)
        self.assertIs(user.is_superuser, False)
        self.assertEqual(user.roles, ["support"])
        self.assertEqual(user.scopes, ["read"])
        self.assertEqual(user.client_id, self.f["web_client_id"])
        self.assertIsNone(user.org_id)
        self.assertIsNone(user.org_role)
        self.assertEqual(user.source, "jwt")
        self.assertEqual(user.claims["iss"], self.f["issuer"])
        # Discovery and keys are fetched once and then cached.
        run(auth.verify(self.tokens["ada"]))
        self.assertEqual(calls, {"discovery": 1, "jwks": 1, "introspection": 0})

    def test_concurrent_first_requests_share_one_fetch(self) -> None:
        auth, calls, _ = counted()

        async def many() -> list:
            return await asyncio.gather(*(auth.verify(self.tokens["ada"]) for _ in range(10)))

        users = run(many())
        self.assertEqual({u.id for u in users}, {self.ids["ada"]})
        self.assertEqual(calls, {"discovery": 1, "jwks": 1, "introspection": 0})

    def test_unreachable_issuer_is_a_401(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{s.getsockname()[1]}"
        err = refusal(self, LatchAuth(closed, self.f["audience"]).verify(self.tokens["ada"]))
        self.assertEqual(err.status_code, 401)
        self.assertIn("could not be reached", err.challenge)

    def test_missing_and_expired_tokens(self) -> None:
        auth, _, clock = counted()
        none = refusal(self, auth.verify(None))
        self.assertEqual(none.status_code, 401)
        self.assertEqual(none.challenge, f'Bearer realm="{self.f["audience"]}"')
        self.assertIsNone(none.code)

        # A token of the 1-second resource, once its exp and the 5 s leeway are past (real clock).
        short = self.tokens["short"]
        wait = claims_of(short)["exp"] + 5.5 - time.time()
        if wait > 0:
            time.sleep(wait)
        expired = refusal(self, LatchAuth(self.f["issuer"], self.f["short_audience"]).verify(short))
        self.assertEqual(expired.status_code, 401)
        self.assertRegex(expired.challenge, rf'^Bearer realm="{self.f["short_audience"]}", error="invalid_token", error_description="[^"]*expired')

        # The leeway, on a clock the test moves: 3 s past exp is fine, 6 s is not.
        exp = claims_of(self.tokens["ada"])["exp"]
        clock.offset = exp + 3 - time.time()
        self.assertEqual(run(auth.verify(self.tokens["ada"])).id, self.ids["ada"])
        clock.offset = exp + 6 - time.time()
        self.assertIn("expired", refusal(self, auth.verify(self.tokens["ada"])).challenge)

    def test_wrong_audience(self) -> None:
        other, _, _ = counted(audience=self.f["other_audience"])
        err = refusal(self, other.verify(self.tokens["ada"]))
        self.assertEqual(err.status_code, 401)
        self.assertIn('error="invalid_token"', err.challenge)
        self.assertIn("aud", err.challenge)
        # A token for the other API is refused by this one.
        auth, _, _ = counted()
        self.assertIn("aud", refusal(self, auth.verify(self.tokens["other"])).challenge)

    def test_wrong_issuer(self) -> None:
        """Another issuer whose discovery points at Latch's keys: Latch's tokens are not its tokens."""
        jwks_uri = httpx.get(f"{self.f['issuer']}/.well-known/openid-configuration").json()["jwks_uri"]

        class Discovery(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                me = f"http://127.0.0.1:{self.server.server_address[1]}"
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": me, "jwks_uri": jwks_uri}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            issuer = f"http://127.0.0.1:{server.server_address[1]}"
            err = refusal(self, LatchAuth(issuer, self.f["audience"]).verify(self.tokens["ada"]))
            self.assertEqual(err.status_code, 401)
            self.assertIn("iss", err.challenge)
        finally:
            server.shutdown()
            server.server_close()

    def test_alg_none_and_hs256_forgeries(self) -> None:
        auth, calls, _ = counted()
        token = self.tokens["ada"]
        header = jwt.get_unverified_header(token)
        payload = token.split(".")[1]

        none = f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': header['kid']})}.{payload}."
        err = refusal(self, auth.verify(none))
        self.assertEqual(err.status_code, 401)
        self.assertIn("algorithm", err.challenge)

        # HS256 keyed with the public key, as PEM and as the JWK's JSON.
        jwks = httpx.get(f"{self.f['issuer']}/jwks").json()["keys"]
        public_jwk = next(k for k in jwks if k["kid"] == header["kid"])
        pem = jwt.PyJWK(public_jwk).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        for secret in (pem, json.dumps(public_jwk).encode()):
            signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': header['kid']})}.{payload}"
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
            err = refusal(self, auth.verify(forged))
            self.assertEqual(err.status_code, 401)
            self.assertIn('error="invalid_token"', err.challenge)
        # The untouched token is fine, so the refusals above are about the algorithm.
        self.assertEqual(run(auth.verify(token)).id, self.ids["ada"])
        # A tampered payload under Latch's real signature fails too.
        tampered_payload = b64({**claims_of(token), "is_superuser": True})
        parts = token.split(".")
        self.assertIn("signature", refusal(self, auth.verify(f"{parts[0]}.{tampered_payload}.{parts[2]}")).challenge)
        self.assertEqual(calls["jwks"], 1)

    def test_a_deeply_nested_header_is_a_401_not_a_500(self) -> None:
        auth, calls, _ = counted()
        nested = base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("=")
        err = refusal(self, auth.verify(f"{nested}.e30.c2ln"))
        self.assertEqual(err.status_code, 401)
        self.assertIn('error="invalid_token"', err.challenge)

    def test_id_token_is_not_an_access_token(self) -> None:
        # An API whose audience is the client the ID token was issued to: only `typ` tells them apart.
        auth, _, _ = counted(audience=self.f["web_client_id"])
        id_token = self.tokens["id_token"]
        self.assertEqual(jwt.get_unverified_header(id_token).get("typ", "JWT").lower(), "jwt")
        err = refusal(self, auth.verify(id_token))
        self.assertEqual(err.status_code, 401)
        self.assertIn("typ", err.challenge)

    def test_a_dpop_bound_token_is_not_a_bearer_token(self) -> None:
        auth, _, _ = counted()
        self.assertIn("jkt", claims_of(self.tokens["dpop_bound"]).get("cnf", {}))
        err = refusal(self, auth.verify(self.tokens["dpop_bound"]))
        self.assertEqual(err.status_code, 401)
        self.assertIn('error="invalid_token"', err.challenge)
        self.assertIn("DPoP", err.challenge)

    def test_unknown_signing_key(self) -> None:
        auth, calls, _ = counted()
        run(auth.verify(self.tokens["ada"]))
        err = refusal(self, auth.verify(foreign_token("not-a-latch-key", claims_of(self.tokens["ada"]))))
        self.assertEqual(err.status_code, 401)
        self.assertIn("unknown key", err.challenge)
        self.assertEqual(calls["jwks"], 1, "no refetch within 30 s of the first fetch")

    def test_junk_kids_then_key_rotation(self) -> None:
        auth, calls, clock = counted()
        run(auth.verify(self.tokens["ada"]))
        self.assertEqual(calls["jwks"], 1)
        claims = claims_of(self.tokens["ada"])

        def junk(n: int) -> None:
            for i in range(n):
                err = refusal(self, auth.verify(foreign_token(f"junk-{clock.offset}-{i}", claims)))
                self.assertIn("unknown key", err.challenge)

        junk(10)
        self.assertEqual(calls["jwks"], 1, "the first fetch counts: no refetch within 30 s")
        clock.offset = 31
        junk(10)
        self.assertEqual(calls["jwks"], 2, "one refetch for ten junk kids")

        # Rotate the key that signs this API's tokens through the admin API.
        machine = self.f["clients"]["machine"]
        old_kid = jwt.get_unverified_header(client_credentials_token(machine, self.f["audience"], "read"))["kid"]
        admin = client_credentials_token(self.f["clients"]["ops"], self.f["api_resource"], "admin:read admin:write")
        res = httpx.post(f"{self.f['issuer']}/api/v1/keys/{old_kid}/rotate", headers={"Authorization": f"Bearer {admin}"})
        self.assertEqual(res.status_code, 200, res.text)
        new_kid = res.json()["id"]
        self.assertNotEqual(new_kid, old_kid)
        deadline = time.time() + 20
        while True:
            rotated = client_credentials_token(machine, self.f["audience"], "read")
            if jwt.get_unverified_header(rotated)["kid"] == new_kid:
                break
            self.assertLess(time.time(), deadline, "Latch did not sign with the new key")
            time.sleep(0.2)

        # Within 30 s of the last fetch the new kid is not fetched for...
        self.assertIn("unknown key", refusal(self, auth.verify(rotated)).challenge)
        self.assertEqual(calls["jwks"], 2)
        # ...after that, exactly one refetch and it is accepted, as are later tokens with it.
        clock.offset = 62
        user = run(auth.verify(rotated, scopes=["read"]))
        self.assertEqual(user.id, machine["client_id"])
        self.assertEqual(calls["jwks"], 3)
        run(auth.verify(rotated))
        run(auth.verify(self.tokens["ada"]))  # the old key stays published
        self.assertEqual(calls["jwks"], 3)
        self.assertEqual(calls["discovery"], 1)

    def test_scopes_organizations_and_superuser(self) -> None:
        auth, _, _ = counted()
        audience = self.f["audience"]
        err = refusal(self, auth.verify(self.tokens["ada_write"], scopes=["read"]))
        self.assertEqual(err.status_code, 403)
        self.assertEqual(err.challenge, f'Bearer realm="{audience}", error="insufficient_scope", error_description="the token lacks a required scope", scope="read"')

        acme, globex = self.ids["acme"], self.ids["globex"]
        user = run(auth.verify(self.tokens["ada_acme"], organization=acme, org_roles=["owner", "admin"]))
        self.assertEqual((user.org_id, user.org_role), (acme, "owner"))
        for requirement in ({"organization": globex}, {"org_roles": ["admin"]}, {"superuser": True}):
            err = refusal(self, auth.verify(self.tokens["ada_acme"], **requirement))
            self.assertEqual(err.status_code, 403, requirement)
            self.assertIn('error="insufficient_scope"', err.challenge)
            self.assertNotIn("scope=", err.challenge.replace("insufficient_scope", ""))
        # A member of globex is neither owner nor admin there.
        member = run(auth.verify(self.tokens["ada_globex"], organization=globex))
        self.assertEqual(member.org_role, "member")
        self.assertEqual(refusal(self, auth.verify(self.tokens["ada_globex"], organization=globex, org_roles=["owner", "admin"])).status_code, 403)
        # A token for no organization fails an organization requirement.
        self.assertEqual(refusal(self, auth.verify(self.tokens["ada"], organization=acme)).status_code, 403)

        root = run(auth.verify(self.tokens["root"], superuser=True))
        self.assertIs(root.is_superuser, True)
        self.assertEqual(root.id, self.ids["root"])

    def test_personal_access_token_through_introspection(self) -> None:
        pat = self.f["pat"]
        introspection = self.f["clients"]["introspection"]
        client = (introspection["client_id"], introspection["client_secret"])

        # Without introspection credentials a token that is not a JWT is refused outright.
        bare, bare_calls, _ = counted()
        self.assertIn("introspection is not configured", refusal(self, bare.verify(pat["token"])).challenge)
        self.assertEqual(bare_calls["introspection"], 0)

        auth, calls, clock = counted(introspection_client=client)
        user = run(auth.verify(pat["token"], scopes=["read"]))
        self.assertEqual((user.id, user.source), (self.ids["ada"], "introspection"))
        self.assertEqual(user.scopes, ["read"])
        run(auth.verify(pat["token"]))
        self.assertEqual(calls["introspection"], 1, "cached")
        # JWTs never go to introspection.
        run(auth.verify(self.tokens["ada"]))
        self.assertEqual(calls["introspection"], 1)

        uncached, uncached_calls, _ = counted(introspection_client=client, cache_seconds=0)
        run(uncached.verify(pat["token"]))
        run(uncached.verify(pat["token"]))
        self.assertEqual(uncached_calls["introspection"], 2)

        # A one-second cache on the real clock.
        brief, brief_calls, _ = counted(introspection_client=client, cache_seconds=1)
        run(brief.verify(pat["token"]))

        res = httpx.delete(f"{self.f['issuer']}/api/v1/me/tokens/{pat['id']}", headers={"Authorization": f"Bearer {self.tokens['account']}"})
        self.assertEqual(res.status_code, 204, res.text)
        revoked_at = time.time()

        # Within the cache time the answer is reused; once it has run out, Latch says inactive.
        self.assertEqual(run(auth.verify(pat["token"])).id, self.ids["ada"])
        self.assertEqual(calls["introspection"], 1)
        clock.offset = 31
        err = refusal(self, auth.verify(pat["token"]))
        self.assertEqual(err.status_code, 401)
        self.assertIn("not active", err.challenge)
        self.assertEqual(calls["introspection"], 2)
        time.sleep(max(0.0, 1.1 - (time.time() - revoked_at)))
        self.assertIn("not active", refusal(self, brief.verify(pat["token"])).challenge)
        self.assertEqual(brief_calls["introspection"], 2)
        # Without a cache the revocation is seen at once.
        self.assertIn("not active", refusal(self, uncached.verify(pat["token"])).challenge)

        # Junk that is not a JWT is asked about too, and refused.
        self.assertIn("not active", refusal(self, auth.verify("not-a-token")).challenge)


if __name__ == "__main__":
    unittest.main()
