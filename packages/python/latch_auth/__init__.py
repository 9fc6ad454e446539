"""Latch access tokens for FastAPI services.

One module, so it can be installed (``pip install ./packages/python``) or copied into a project.

- JWT access tokens (RFC 9068) are checked against the keys the issuer publishes (``jwks_uri``
  from its discovery document): header ``typ`` must be ``at+jwt`` (§4, so an ID token is
  refused), ``iss`` exact, ``aud`` containing the audience, ``exp``/``nbf`` with a small leeway,
  and only the asymmetric algorithms Latch signs with (never ``none``, never ``HS*``). An unknown
  ``kid`` refetches the key set at most once per 30 seconds, the first fetch included.
- Tokens that are not JWTs (personal access tokens ``lat_…``, opaque tokens) are checked at the
  introspection endpoint (RFC 7662) when client credentials are given, and cached briefly. JWTs
  never go to introspection.
- Refusals are 401/403 with the RFC 6750 §3 ``WWW-Authenticate`` challenge and an RFC 9457
  problem+json body (``auth.install(app)`` gives the full problem document).
- ``legacy_client(id_header, secret_header)`` accepts machine credentials an app used to check
  itself (a site id and its API token in two headers) by asking Latch for a client-credentials
  token with them, so the machines keep sending what they always sent.

Network calls use httpx's async client, so they never block the event loop.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote_plus

import httpx
import jwt
from fastapi import Depends, Request, Security, WebSocket
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException, WebSocketException

__all__ = ["LatchAuth", "LatchUser", "LatchAuthError", "ALGORITHMS"]

#: RFC 9068 §4 wants asymmetric signatures; these are the ones Latch signs access tokens with.
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
#: At most one key set fetch per this many seconds, the first fetch included.
JWKS_REFETCH_INTERVAL = 30.0
#: Bounds the introspection cache so distinct junk tokens cannot grow it without limit.
INTROSPECTION_CACHE_MAX = 10_000
#: Bounds the legacy client cache (one entry per distinct id/secret pair presented).
LEGACY_CACHE_MAX = 10_000
#: The longest a checked id/secret pair is trusted without asking Latch again.
LEGACY_CACHE_SECONDS = 60.0
#: Longer header values are refused without a call to Latch.
LEGACY_HEADER_MAX = 512
#: RFC 6455 §7.4.1: policy violation.
WS_POLICY_VIOLATION = 1008

_BEARER_RE = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
_JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _quoted(value: str) -> str:
    """RFC 9110 §5.6.4 quoted-string: backslash-escape ``"`` and ``\\``, drop control characters."""
    return re.sub(r'(["\\])', r"\\\1", _CONTROL_RE.sub(" ", value))


class LatchAuthError(HTTPException):
    """A refusal: ``status_code`` 401 or 403 and ``challenge``, the RFC 6750 §3 ``WWW-Authenticate`` value.

    It is an ``HTTPException``, so FastAPI answers it even without ``LatchAuth.install``: the
    status, the challenge, ``application/problem+json`` and ``{"detail": …}``. ``legacy_client``
    also raises it with 503 (no challenge) when Latch cannot be asked.
    """

    def __init__(self, status_code: int, realm: str, code: Optional[str], description: str, scope: Sequence[str] = (), *, challenge: Optional[str] = None) -> None:
        if challenge is None:
            # RFC 6750 §3.1: no error attribute when the request carried no token.
            params = [f'realm="{_quoted(realm)}"']
            if code:
                params += [f'error="{code}"', f'error_description="{_quoted(description)}"']
            if scope:
                params.append(f'scope="{_quoted(" ".join(scope))}"')
            challenge = "Bearer " + ", ".join(params)
        self.challenge = challenge
        #: The RFC 6750 §3.1 error code; None when no token was sent.
        self.code = code
        headers = {"Cache-Control": "no-store", "Content-Type": "application/problem+json"}
        if challenge:
            headers["WWW-Authenticate"] = challenge
        super().__init__(status_code, detail=description, headers=headers)

    def problem(self) -> Dict[str, Any]:
        """RFC 9457 problem details, the same document the Node verifier answers."""
        return {"type": "about:blank", "title": HTTPStatus(self.status_code).phrase, "status": self.status_code, "detail": self.detail}


class _Unreachable(LatchAuthError):
    """Latch could not be asked (network, timeout, 5xx, 429, not JSON): a 401 for tokens, a 503 for legacy clients."""


class _Answered(LatchAuthError):
    """Latch answered 4xx; ``error`` is the RFC 6749 §5.2 code of its body, if any."""

    def __init__(self, realm: str, status: int, error: Optional[str]) -> None:
        super().__init__(401, realm, "invalid_token", f"the authorization server answered {status}")
        self.error = error


async def problem_response(request: Any, exc: Exception) -> JSONResponse:
    """The exception handler ``LatchAuth.install`` registers (also usable with ``app.add_exception_handler``)."""
    assert isinstance(exc, LatchAuthError)
    if isinstance(request, WebSocket):
        # A WebSocket has no response: accept and close with 1008 so every client sees the code.
        await request.accept()
        await request.close(code=WS_POLICY_VIOLATION, reason=str(exc.detail)[:120])
        return None  # type: ignore[return-value]
    return JSONResponse(exc.problem(), status_code=exc.status_code, headers=dict(exc.headers or {}))


@dataclass(frozen=True)
class LatchUser:
    """Who is calling, from a verified token. Field names follow fastapi-users' user object."""

    #: ``sub``: the account id (or the client id of a machine client), as a string.
    id: str
    email: Optional[str]
    #: Always True: Latch refuses tokens of deactivated accounts.
    is_active: bool
    is_superuser: bool
    #: ``email_verified``.
    is_verified: bool
    roles: List[str]
    org_id: Optional[str]
    org_role: Optional[str]
    #: The ``scope`` claim as a list.
    scopes: List[str]
    client_id: Optional[str]
    #: The JWT payload or the introspection response, as received.
    claims: Dict[str, Any] = field(repr=False)
    #: ``jwt``: verified locally; ``introspection``: answered by Latch.
    source: str = "jwt"


def _str_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _user_of(payload: Dict[str, Any], source: str) -> LatchUser:
    scope = payload.get("scope")
    roles = payload.get("roles")
    return LatchUser(
        id=payload["sub"],
        email=_str_or_none(payload.get("email")),
        is_active=True,
        is_superuser=payload.get("is_superuser") is True,
        is_verified=payload.get("email_verified") is True,
        roles=[r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [],
        org_id=_str_or_none(payload.get("org_id")),
        org_role=_str_or_none(payload.get("org_role")),
        scopes=[s for s in scope.split(" ") if s] if isinstance(scope, str) else [],
        client_id=_str_or_none(payload.get("client_id")),
        claims=payload,
        source=source,
    )


def _b64url_json(part: str) -> Any:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return json.loads(raw)


def _jwt_header(token: str) -> Optional[Dict[str, Any]]:
    """The protected header of a compact JWS, or None when the token is not one (an opaque token)."""
    if not _JWT_RE.match(token):
        return None
    try:
        header = _b64url_json(token.split(".", 1)[0])
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        # RecursionError: a header of deeply nested brackets is junk, not a reason for a 500.
        return None
    return header if isinstance(header, dict) else None


def _typ_is_at_jwt(typ: Any) -> bool:
    # RFC 9068 §4 names `at+jwt`; the media type form `application/at+jwt` is the same (RFC 7515 §4.1.9).
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    return typ == "at+jwt" or typ == "application/at+jwt"


def _basic(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def bearer_token(authorization: Optional[str], realm: str) -> Optional[str]:
    """RFC 6750 §2.1 ``Authorization: Bearer <token>``; a header without a usable one is an invalid token."""
    if not authorization:
        return None
    match = _BEARER_RE.match(authorization)
    if not match:
        raise LatchAuthError(401, realm, "invalid_token", "the Authorization header is not a Bearer token")
    return match.group(1)


_ssl_context: Optional[ssl.SSLContext] = None


def _tls() -> ssl.SSLContext:
    # Loading the CA bundle is the costly part of an httpx client; done once per process.
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


_bearer_scheme = HTTPBearer(auto_error=False, scheme_name="Latch", description="A Latch access token (JWT) or personal access token")


class LatchAuth:
    """Verifies Latch access tokens and offers them to FastAPI routes as dependencies.

    ``LatchAuth(issuer, audience, introspection_client=(client_id, client_secret) | None)``:

    - ``issuer``: Latch's URL exactly as its tokens' ``iss``;
    - ``audience``: this API's resource identifier (a token's ``aud`` must contain it);
    - ``introspection_client``: the credentials of a client of this API at Latch, to accept
      tokens that are not JWTs (personal access tokens) through introspection;
    - ``leeway``: seconds of clock skew allowed on ``exp``/``nbf`` (default 5);
    - ``cache_seconds``: how long an introspection answer is reused (default 30, 0 = never,
      never past the token's ``exp``);
    - ``clock``: seconds since the epoch (default ``time.time``).

    Dependencies: ``current_user`` (= ``get_current_user``), ``current_active_user``,
    ``current_superuser``, ``require_scopes(*scopes)``, ``require_org_role(*roles,
    org_param="org_id")`` and ``websocket_user``. Call ``install(app)`` once for RFC 9457 bodies.
    """

    #: Any valid token (401 otherwise).
    current_user: Callable[..., Awaitable[LatchUser]]
    #: The same as current_user, under the name fastapi-users apps use.
    get_current_user: Callable[..., Awaitable[LatchUser]]
    #: The same: Latch issues and introspects tokens only for active accounts.
    current_active_user: Callable[..., Awaitable[LatchUser]]
    #: A superuser's token (403 otherwise).
    current_superuser: Callable[..., Awaitable[LatchUser]]
    #: For WebSocket routes; on failure the socket is accepted and closed with 1008.
    websocket_user: Callable[..., Awaitable[LatchUser]]

    def __init__(
        self,
        issuer: str,
        audience: str,
        introspection_client: Optional[Tuple[str, str]] = None,
        *,
        leeway: float = 5,
        cache_seconds: float = 30,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("LatchAuth needs an issuer and an audience")
        if introspection_client is not None:
            if len(introspection_client) != 2 or not all(isinstance(v, str) and v for v in introspection_client):
                raise ValueError("introspection_client is (client_id, client_secret)")
        self.issuer = issuer
        self.audience = audience
        self.introspection_client = tuple(introspection_client) if introspection_client else None
        self.leeway = leeway
        self.cache_seconds = max(0.0, float(cache_seconds))
        self._clock = clock
        self._timeout = timeout

        self._discovery: Optional[Dict[str, Any]] = None
        self._discovery_pending: Optional[Tuple[asyncio.AbstractEventLoop, "asyncio.Task[Dict[str, Any]]"]] = None
        self._jwks: Optional[Dict[str, Dict[str, Any]]] = None
        self._keys: Dict[Tuple[str, str], Any] = {}
        self._last_jwks_fetch = -math.inf
        self._jwks_pending: Optional[Tuple[asyncio.AbstractEventLoop, "asyncio.Task[None]"]] = None
        self._introspected: "OrderedDict[str, Tuple[float, Optional[Dict[str, Any]]]]" = OrderedDict()

        self._build_dependencies()

    # -- network -----------------------------------------------------------------------------

    def _invalid(self, description: str) -> LatchAuthError:
        return LatchAuthError(401, self.audience, "invalid_token", description)

    async def fetch_json(self, method: str, url: str, *, headers: Optional[Mapping[str, str]] = None, data: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """The one place this module goes to the network (discovery, key set, introspection)."""
        try:
            async with httpx.AsyncClient(timeout=self._timeout, verify=_tls(), follow_redirects=False) as client:
                # httpx's timeout bounds each phase; this bounds the whole call (a server trickling bytes).
                res = await asyncio.wait_for(client.request(method, url, headers={"Accept": "application/json", **(headers or {})}, data=data), self._timeout)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError, asyncio.TimeoutError):
            # A URL the discovery document got wrong is as unreachable as a server that is down.
            raise _Unreachable(401, self.audience, "invalid_token", "the authorization server could not be reached") from None
        if res.status_code >= 500 or res.status_code == 429:
            raise _Unreachable(401, self.audience, "invalid_token", f"the authorization server answered {res.status_code}")
        try:
            body = res.json()
        except (ValueError, RecursionError):
            body = None
        if not 200 <= res.status_code < 300:
            error = body.get("error") if isinstance(body, dict) else None
            raise _Answered(self.audience, res.status_code, error if isinstance(error, str) else None)
        if not isinstance(body, dict):
            raise _Unreachable(401, self.audience, "invalid_token", "the authorization server sent no JSON object")
        return body

    async def _shared(self, slot: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Concurrent callers on one event loop share one fetch."""
        loop = asyncio.get_running_loop()
        pending = getattr(self, slot)
        if pending is not None and pending[0] is loop and not pending[1].done():
            return await asyncio.shield(pending[1])
        task = loop.create_task(make())
        # A waiter cancelled mid-fetch leaves the task to finish: its error must not go unseen.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        setattr(self, slot, (loop, task))
        try:
            return await asyncio.shield(task)
        finally:
            if getattr(self, slot) is not None and getattr(self, slot)[1] is task:
                setattr(self, slot, None)

    async def _discover(self) -> Dict[str, Any]:
        """Fetched once, on first use; a failure is forgotten so the next request tries again."""
        if self._discovery is not None:
            return self._discovery

        async def load() -> Dict[str, Any]:
            doc = await self.fetch_json("GET", self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            # RFC 8414 §3.3: the metadata's issuer must be the one configured.
            if doc.get("issuer") != self.issuer:
                raise self._invalid("the discovery document names another issuer")
            if not isinstance(doc.get("jwks_uri"), str):
                raise self._invalid("the discovery document has no jwks_uri")
            self._discovery = doc
            return doc

        return await self._shared("_discovery_pending", load)

    async def _refresh_keys(self) -> None:
        """Fetches the key set unless one was fetched within the last 30 s."""
        loop = asyncio.get_running_loop()
        pending = self._jwks_pending
        if pending is not None and pending[0] is loop and not pending[1].done():
            await asyncio.shield(pending[1])
            return
        if self._clock() - self._last_jwks_fetch < JWKS_REFETCH_INTERVAL:
            return
        self._last_jwks_fetch = self._clock()

        async def load() -> None:
            doc = await self._discover()
            body = await self.fetch_json("GET", doc["jwks_uri"])
            keys = body.get("keys")
            if not isinstance(keys, list):
                raise self._invalid("the key set has no keys")
            jwks: Dict[str, Dict[str, Any]] = {}
            for key in keys:
                if isinstance(key, dict) and isinstance(key.get("kid"), str) and key.get("use") in (None, "sig"):
                    jwks[key["kid"]] = key
            self._jwks = jwks
            self._keys = {}

        await self._shared("_jwks_pending", load)

    def _key_for(self, kid: str, alg: str) -> Any:
        """The public key of ``kid`` for ``alg``, or None when that key is not one for that algorithm."""
        cached = self._keys.get((kid, alg))
        if cached is not None:
            return cached
        jwk = (self._jwks or {}).get(kid)
        if jwk is None or jwk.get("alg", alg) != alg:
            return None
        try:
            # PyJWK with an explicit algorithm checks the key type (RSA for RS/PS, EC for ES, OKP for EdDSA).
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            return None
        self._keys[(kid, alg)] = key
        return key

    # -- verification ------------------------------------------------------------------------

    async def _verify_jwt(self, token: str, header: Dict[str, Any]) -> LatchUser:
        alg = header.get("alg")
        # Refused before any key is looked up: `none`, HS* (the public key as an HMAC secret) and the rest.
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise self._invalid("the token is not signed with an accepted algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise self._invalid("the token names no signing key")
        if self._jwks is None or kid not in self._jwks:
            await self._refresh_keys()
        if self._jwks is None:
            raise self._invalid("no signing keys are known")
        if kid not in self._jwks:
            raise self._invalid("the token is signed by an unknown key")
        key = self._key_for(kid, alg)
        if key is None:
            raise self._invalid("the token's algorithm does not match its key")
        try:
            # Signature only here; the claims are checked below, on this verifier's clock.
            payload = jwt.decode(
                token,
                key,
                algorithms=[alg],
                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False, "verify_iss": False},
            )
        except jwt.InvalidSignatureError:
            raise self._invalid("the token's signature is not valid") from None
        except jwt.PyJWTError:
            raise self._invalid("the token is not valid") from None
        if not _typ_is_at_jwt(header.get("typ")):
            raise self._invalid("the token's typ claim is not accepted")
        self._check_claims(payload)
        exp = payload.get("exp")
        if not _number(exp):
            raise self._invalid("the token's exp claim is missing")
        return _user_of(payload, "jwt")

    def _check_claims(self, payload: Dict[str, Any]) -> None:
        now = self._clock()
        if payload.get("iss") != self.issuer:
            raise self._invalid("the token's iss claim is not accepted")
        aud = payload.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.audience not in audiences:
            raise self._invalid("the token's aud claim is not accepted")
        exp = payload.get("exp")
        if exp is not None:
            if not _number(exp):
                raise self._invalid("the token's exp claim is not accepted")
            if exp <= now - self.leeway:
                raise self._invalid("the token has expired")
        nbf = payload.get("nbf")
        if nbf is not None and (not _number(nbf) or nbf > now + self.leeway):
            raise self._invalid("the token's nbf claim is not accepted")
        sub = payload.get("sub")
        if not isinstance(sub, str) or not sub:
            raise self._invalid("the token's sub claim is missing")
        # RFC 9449 §7.1: a DPoP-bound token is worth nothing without a proof of its key; taken as a
        # bearer token, a thief holding only the token would get in.
        cnf = payload.get("cnf")
        if isinstance(cnf, dict) and "jkt" in cnf:
            raise self._invalid("the token is bound to a key (DPoP) and cannot be used as a bearer token")

    async def _introspect(self, token: str) -> LatchUser:
        if not self.introspection_client:
            raise self._invalid("the token is not a JWT and introspection is not configured")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._introspected.get(key)
        if cached is not None and cached[0] > now:
            payload = cached[1]
        else:
            doc = await self._discover()
            endpoint = doc.get("introspection_endpoint")
            if not isinstance(endpoint, str):
                raise self._invalid("the authorization server offers no introspection")
            client_id, client_secret = self.introspection_client
            body = await self.fetch_json(
                "POST",
                endpoint,
                headers={"Authorization": _basic(client_id, client_secret), "Content-Type": "application/x-www-form-urlencoded"},
                data={"token": token},
            )
            payload = body if body.get("active") is True else None
            if self.cache_seconds > 0:
                exp = payload.get("exp") if payload is not None else None
                until = min(now + self.cache_seconds, exp if _number(exp) else math.inf)
                self._introspected.pop(key, None)
                while len(self._introspected) >= INTROSPECTION_CACHE_MAX:
                    self._introspected.popitem(last=False)
                self._introspected[key] = (until, payload)
        # RFC 7662 §2.2: an inactive token says nothing else.
        if payload is None:
            raise self._invalid("the token is not active")
        if "iss" in payload and payload["iss"] != self.issuer:
            raise self._invalid("the token's iss claim is not accepted")
        self._check_claims({**payload, "iss": self.issuer})
        return _user_of(payload, "introspection")

    def _check(self, user: LatchUser, *, scopes: Sequence[str] = (), superuser: bool = False, organization: Optional[str] = None, org_roles: Sequence[str] = ()) -> None:
        realm = self.audience
        if any(s not in user.scopes for s in scopes):
            raise LatchAuthError(403, realm, "insufficient_scope", "the token lacks a required scope", list(scopes))
        if superuser and not user.is_superuser:
            raise LatchAuthError(403, realm, "insufficient_scope", "the subject must be a superuser")
        if organization is not None and (user.org_id or "").lower() != organization.lower():
            raise LatchAuthError(403, realm, "insufficient_scope", "the token is not for this organization")
        if org_roles and user.org_role not in org_roles:
            raise LatchAuthError(403, realm, "insufficient_scope", "the organization role does not allow this")

    async def verify(
        self,
        token: Optional[str],
        *,
        scopes: Iterable[str] = (),
        superuser: bool = False,
        organization: Optional[str] = None,
        org_roles: Iterable[str] = (),
    ) -> LatchUser:
        """The caller of ``token``, or a LatchAuthError (401 for the token, 403 for a requirement)."""
        if not token:
            raise LatchAuthError(401, self.audience, None, "an access token is required")
        header = _jwt_header(token)
        user = await (self._verify_jwt(token, header) if header is not None else self._introspect(token))
        self._check(user, scopes=list(scopes), superuser=superuser, organization=organization, org_roles=list(org_roles))
        return user

    # -- FastAPI -----------------------------------------------------------------------------

    def install(self, app: Any) -> None:
        """Answers refusals with the full RFC 9457 problem document: ``auth.install(app)``."""
        app.add_exception_handler(LatchAuthError, problem_response)

    def _build_dependencies(self) -> None:
        # Closures rather than methods: FastAPI reads their signatures, and `Depends(current_user)`
        # inside the others makes one verification per request however many of them a route uses.

        async def current_user(request: Request, _credentials: Optional[HTTPAuthorizationCredentials] = Security(_bearer_scheme)) -> LatchUser:
            """Any valid token: 401 otherwise."""
            return await self.verify(bearer_token(request.headers.get("authorization"), self.audience))

        async def current_active_user(user: LatchUser = Depends(current_user)) -> LatchUser:
            """Same as current_user: Latch issues and introspects tokens only for active accounts."""
            if not user.is_active:
                raise LatchAuthError(401, self.audience, "invalid_token", "the account is not active")
            return user

        async def current_superuser(user: LatchUser = Depends(current_user)) -> LatchUser:
            """403 unless the token says ``is_superuser`` (issued with scope ``roles``)."""
            self._check(user, superuser=True)
            return user

        async def websocket_user(websocket: WebSocket) -> LatchUser:
            """The caller of a WebSocket: the token from ``Authorization``, ``?token=`` or ``?access_token=``.

            On failure the socket is accepted and then closed with 1008 (RFC 6455 §7.4.1): a
            browser never sees the status of a refused handshake, but every client sees a close code.
            """
            try:
                token = bearer_token(websocket.headers.get("authorization"), self.audience)
                token = token or websocket.query_params.get("token") or websocket.query_params.get("access_token")
                return await self.verify(token)
            except LatchAuthError as err:
                await websocket.accept()
                raise WebSocketException(code=WS_POLICY_VIOLATION, reason=str(err.detail)[:120]) from None

        self.current_user = current_user
        self.get_current_user = current_user
        self.current_active_user = current_active_user
        self.current_superuser = current_superuser
        self.websocket_user = websocket_user

    def require_scopes(self, *scopes: str) -> Callable[..., Awaitable[LatchUser]]:
        """A dependency: every one of ``scopes`` (403 ``insufficient_scope`` with ``scope="…"`` otherwise)."""
        needed = list(scopes)

        async def scoped_user(user: LatchUser = Depends(self.current_user)) -> LatchUser:
            self._check(user, scopes=needed)
            return user

        return scoped_user

    def require_org_role(self, *roles: str, org_param: str = "org_id") -> Callable[..., Awaitable[LatchUser]]:
        """A dependency: the token's ``org_id`` must be the path (or query) parameter ``org_param``
        and, when roles are given, its ``org_role`` one of them (403 otherwise).

        Organization tokens come from an authorization request with ``organization=<id>``.
        """
        allowed = list(roles)

        async def org_user(request: Request, user: LatchUser = Depends(self.current_user)) -> LatchUser:
            wanted = request.path_params.get(org_param)
            if wanted is None:
                wanted = request.query_params.get(org_param)
            if wanted is None:
                raise LatchAuthError(403, self.audience, "insufficient_scope", "the token is not for this organization")
            self._check(user, organization=str(wanted), org_roles=allowed)
            return user

        return org_user

    # -- machine credentials the app used to check itself ---------------------------------------

    def legacy_client(self, id_header: str, secret_header: str, *, scope: Optional[str] = None, cache_seconds: float = LEGACY_CACHE_SECONDS) -> Callable[..., Awaitable[LatchUser]]:
        """A dependency for machines that send an id and a secret in two headers of their own
        (``legacy_client("X-Site-UUID", "X-API-Token")``), imported into Latch as confidential
        clients whose ``client_id`` is the id and whose secret is the old token.

        The pair is checked with a client-credentials token request for this API (RFC 6749 §4.4,
        ``client_secret_basic``, ``resource`` = the audience, RFC 8707), and the token Latch
        issues is verified like any other. The route gets a ``LatchUser`` whose ``id`` and
        ``client_id`` are the client's, with ``org_id``/``org_role`` from the token (its
        ``organizations`` claim when the client belongs to exactly one organization) and
        ``source`` ``legacy_client``. Answers are cached for at most ``cache_seconds`` (≤ 60),
        keyed by an HMAC of the pair under a per-process key, so no secret is kept in memory.
        Missing or wrong headers: 401; Latch unreachable: 503.
        """
        if not id_header or not secret_header or id_header.lower() == secret_header.lower():
            raise ValueError("legacy_client needs two different header names")
        ttl = min(LEGACY_CACHE_SECONDS, max(0.0, float(cache_seconds)))
        extra = [s for s in (scope or "").split(" ") if s]
        # RFC 9110 §11.6.1: a 401 carries a challenge; the scheme names the headers to send.
        challenge = f'LegacyClient realm="{_quoted(self.audience)}", id_header="{_quoted(id_header)}", secret_header="{_quoted(secret_header)}"'
        cache: "OrderedDict[str, Tuple[float, Optional[LatchUser]]]" = OrderedDict()
        key = secrets.token_bytes(32)

        def refused(description: str) -> LatchAuthError:
            return LatchAuthError(401, self.audience, "invalid_client", description, challenge=challenge)

        async def legacy_client_user(request: Request) -> LatchUser:
            client_id = request.headers.get(id_header)
            secret = request.headers.get(secret_header)
            if not client_id or not secret:
                raise refused(f"the {id_header} and {secret_header} headers are required")
            if len(client_id) > LEGACY_HEADER_MAX or len(secret) > LEGACY_HEADER_MAX:
                raise refused("the client credentials are not valid")
            pair = hmac.new(key, client_id.encode("utf-8", "surrogateescape") + b"\0" + secret.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
            now = self._clock()
            cached = cache.get(pair)
            if cached is not None and cached[0] > now:
                user = cached[1]
            else:
                try:
                    user = await self._client_credentials(client_id, secret, extra)
                except _Unreachable as err:
                    detail = str(err.detail) if err.status_code == 503 else "the authorization server could not be reached"
                    raise LatchAuthError(503, self.audience, None, detail, challenge="") from None
                if ttl > 0:
                    exp = user.claims.get("exp") if user is not None else None
                    cache.pop(pair, None)
                    while len(cache) >= LEGACY_CACHE_MAX:
                        cache.popitem(last=False)
                    cache[pair] = (min(now + ttl, exp if _number(exp) else math.inf), user)
            if user is None:
                raise refused("the client credentials are not valid")
            return user

        return legacy_client_user

    async def _client_credentials(self, client_id: str, secret: str, scopes: List[str]) -> Optional[LatchUser]:
        """The client behind an id/secret pair, or None when Latch does not accept the pair for this API."""
        try:
            doc = await self._discover()
        except LatchAuthError:
            # A discovery document naming another issuer is as unusable as no answer.
            raise _Unreachable(401, self.audience, "invalid_token", "the authorization server could not be reached") from None
        endpoint = doc.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise _Unreachable(401, self.audience, "invalid_token", "the authorization server offers no token endpoint")
        # `organizations` puts the client's memberships in the token; a client not allowed that
        # scope is asked again without it (RFC 6749 §5.2 invalid_scope).
        for wanted in (["organizations", *scopes], scopes):
            data = {"grant_type": "client_credentials", "resource": self.audience}
            if wanted:
                data["scope"] = " ".join(wanted)
            try:
                body = await self.fetch_json(
                    "POST",
                    endpoint,
                    headers={"Authorization": _basic(client_id, secret), "Content-Type": "application/x-www-form-urlencoded"},
                    data=data,
                )
            except _Answered as answer:
                if answer.error == "invalid_scope" and wanted and wanted[0] == "organizations":
                    continue
                # invalid_client (the pair), unauthorized_client (no such grant), invalid_target
                # (not a client of this API), invalid_scope: the pair does not open this API.
                return None
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                raise _Unreachable(401, self.audience, "invalid_token", "the authorization server issued no access token")
            try:
                user = await self.verify(token)
            except _Unreachable:
                raise
            except LatchAuthError as err:
                # Latch accepted the pair and issued this token for this API: a token that does
                # not verify here is this side's failure (keys, configuration), not the
                # machine's. Answered 503 and not cached, so the pair works once it is fixed.
                raise _Unreachable(503, self.audience, None, f"the token the authorization server issued does not verify: {err.detail}") from None
            # RFC 9068 §2.2: a client-credentials token names the client in sub and client_id.
            if user.client_id != client_id or user.id != client_id:
                return None
            org_id, org_role = user.org_id, user.org_role
            memberships = user.claims.get("organizations")
            if org_id is None and isinstance(memberships, list) and len(memberships) == 1 and isinstance(memberships[0], dict):
                org_id, org_role = _str_or_none(memberships[0].get("id")), _str_or_none(memberships[0].get("role"))
            return replace(user, org_id=org_id, org_role=org_role, source="legacy_client")
        return None
