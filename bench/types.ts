/** Shapes shared by the bench program and the bare oidc-provider it starts. */

export interface BareClient {
  client_id: string;
  client_secret: string;
  grant_types: string[];
  redirect_uris: string[];
  /** OIDC scopes (oidc-provider's `scope` metadata). */
  scope: string;
  /** Every scope the client may be granted, resource scopes included. */
  allowed_scopes: string[];
  allowed_resources: string[];
  first_party: boolean;
}

export interface BareResource {
  identifier: string;
  scopes: string[];
  alg: 'RS256' | 'ES256' | 'EdDSA';
}

export interface BareConfig {
  port: number;
  issuer: string;
  clients: BareClient[];
  resources: BareResource[];
  users: { id: string; email: string; name: string }[];
}

/** A client as the load generator uses it. */
export interface ClientCreds {
  client_id: string;
  client_secret: string;
}

/** What a scenario needs to know about one server under test. */
export interface Target {
  kind: 'latch' | 'bare';
  url: string;
  /** client_credentials client for the ES256 resource. */
  ccEs256: ClientCreds;
  /** client_credentials client for the RS256 resource. */
  ccRs256: ClientCreds;
  /** Registered for the ES256 resource: introspects its JWTs. */
  introspector: ClientCreds;
  /** First-party confidential client with authorization_code + refresh_token. */
  web: ClientCreds;
  redirectUri: string;
  /** Sign-in accounts (one per concurrent code flow). */
  users: { email: string; password: string }[];
}

export interface Measurement {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** Completed operations counted in rps. */
  ok: number;
  seconds: number;
  /** Server CPU time (all threads and processes) per completed operation, ms. */
  cpuMsPerOp?: number;
  /** This process's (the load generator's) CPU time per completed operation, ms. */
  clientCpuMsPerOp?: number;
}
