import { createHash } from 'node:crypto';

import { calculateJwkThumbprint, decodeJwt, EmbeddedJWK, jwtVerify } from 'jose';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';

import { epochSeconds } from '../lib/time.js';

/**
 * DPoP (RFC 9449): sender-constrained access tokens and public clients' refresh tokens.
 * oidc-provider binds and checks them at its own endpoints (token, userinfo, introspection);
 * this module holds the rules Latch applies on top of it and the proof check for what
 * oidc-provider does not serve: Latch's API (/api/v1) and the token exchange grant.
 */

/** RFC 9449 §11.1: a proof without a server nonce is accepted only this close to now (either side), in seconds. */
export const DPOP_PROOF_WINDOW = 60;
/**
 * `dpop_signing_alg_values_supported` (RFC 9449 §5.1). `Ed25519` is the fully-specified name of
 * EdDSA over Ed25519 (RFC 9864): a proof may carry either.
 */
export const DPOP_SIGNING_ALGS = ['ES256', 'EdDSA', 'Ed25519'];
/** oidc-provider's model for single-use `jti`s (DPoP proofs, client assertions). */
export const REPLAY_MODEL = 'ReplayDetection';
/** How long a proof's `jti` is remembered: longer than any proof is accepted. */
export const REPLAY_TTL = 5 * DPOP_PROOF_WINDOW;

/** The id under which a `jti` is remembered: oidc-provider's own (ReplayDetection.unique), so one namespace serves both. */
export const replayId = (issuer: string, jti: string) => createHash('sha256').update(`${issuer}${jti}`).digest('base64url');

/**
 * `features.dPoP.requireNonce` runs on every proof before oidc-provider verifies it: it answers
 * that no nonce is required (Latch issues none), and refuses a nonce-less proof whose `iat` is
 * more than DPOP_PROOF_WINDOW away from now (oidc-provider itself allows five minutes).
 * A malformed proof is left to oidc-provider, which refuses it.
 */
export function refuseStaleProof(ctx: KoaContextWithOIDC): false {
  let payload: ReturnType<typeof decodeJwt>;
  try {
    payload = decodeJwt(ctx.get('DPoP'));
  } catch {
    return false;
  }
  if (payload.nonce === undefined && typeof payload.iat === 'number' && Math.abs(epochSeconds() - payload.iat) > DPOP_PROOF_WINDOW) {
    throw new errors.InvalidDpopProof('DPoP proof iat is not recent enough');
  }
  return false;
}

/** A proof that was refused, and why (the error_description). */
export class DpopProofError extends Error {}

export interface VerifiedProof {
  /** RFC 7638 thumbprint of the proof's key: what `cnf.jkt` names (RFC 9449 §6.1). */
  jkt: string;
  jti: string;
}

/**
 * RFC 9449 §4.3: one proof JWT, `typ: dpop+jwt`, signed by the public key in its header with an
 * allowed algorithm, for this method and URL (`htm`, `htu` without query and fragment), issued
 * within DPOP_PROOF_WINDOW, and with `accessToken`: its hash in `ath` (§7.1). Replay is the
 * caller's check (`jti`).
 */
export async function verifyDpopProof(proof: string, expected: { method: string; url: string; accessToken?: string }): Promise<VerifiedProof> {
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
  let jwk: Awaited<ReturnType<typeof jwtVerify>>['protectedHeader']['jwk'];
  try {
    ({ payload, protectedHeader: { jwk } } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_SIGNING_ALGS }));
  } catch {
    throw new DpopProofError('invalid DPoP proof');
  }
  if (typeof payload.jti !== 'string' || !payload.jti) throw new DpopProofError('DPoP proof must have a jti');
  if (typeof payload.iat !== 'number') throw new DpopProofError('DPoP proof must have an iat');
  if (payload.nonce !== undefined) throw new DpopProofError('DPoP nonces are not supported');
  if (Math.abs(epochSeconds() - payload.iat) > DPOP_PROOF_WINDOW) throw new DpopProofError('DPoP proof iat is not recent enough');
  if (payload.htm !== expected.method) throw new DpopProofError('DPoP proof htm mismatch');
  const htu = typeof payload.htu === 'string' ? URL.parse(payload.htu) : null;
  if (htu) {
    htu.search = '';
    htu.hash = '';
  }
  if (!htu || htu.href !== URL.parse(expected.url)?.href) throw new DpopProofError('DPoP proof htu mismatch');
  if (expected.accessToken !== undefined) {
    const ath = createHash('sha256').update(expected.accessToken).digest('base64url');
    if (payload.ath !== ath) throw new DpopProofError('DPoP proof ath mismatch');
  }
  return { jkt: await calculateJwkThumbprint(jwk!), jti: payload.jti };
}

/** `cnf.jkt` of a token payload (RFC 9449 §6.1), if it is bound. */
export function boundKeyOf(payload: Record<string, unknown>): string | undefined {
  const cnf = payload.cnf;
  const jkt = cnf && typeof cnf === 'object' ? (cnf as { jkt?: unknown }).jkt : undefined;
  return typeof jkt === 'string' ? jkt : undefined;
}
