/**
 * One error type for the whole application, modelled on oidc-provider's lib/helpers/errors.js:
 * every error Latch throws on purpose is an AppError carrying its HTTP `status`, a stable `code`
 * and whether its message may be shown to the caller (`expose`, true below 500). The admin API
 * renders it as RFC 9457 problem+json (`code` is the problem type's slug), pages as the error
 * page, the CLI as one line. Anything that is not an AppError is a bug: logged, answered 500.
 */

/** One offending field of a request, as the 422 `errors` array lists it. */
export interface FieldError {
  field: string;
  message: string;
}

export interface AppErrorOptions {
  /** The offending field (bad input). */
  field?: string | undefined;
  /** Every offending field, when there are several (the 422 `errors` array). */
  errors?: FieldError[] | undefined;
  /** Response headers the error needs (WWW-Authenticate, Retry-After, Allow). */
  headers?: Record<string, string> | undefined;
}

export class AppError extends Error {
  readonly status: number;
  /** Stable and machine-readable: the admin API's problem type slug. */
  readonly code: string;
  /** Whether the message may be shown to the caller; server errors (5xx) keep theirs in the log. */
  readonly expose: boolean;
  readonly field: string | undefined;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(status: number, code: string, message: string, options: AppErrorOptions = {}) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.expose = status < 500;
    this.field = options.field;
    this.errors = options.errors;
    this.headers = options.headers;
  }
}

/** Bad input to a service, naming the offending field. Pages, CLI and APIs render it their way. */
export class ValidationError extends AppError {
  declare readonly field: string;

  constructor(
    field: string,
    /** What is wrong with the field, without its name ("must be a string"). */
    readonly detail: string,
  ) {
    super(422, 'validation', `${field} ${detail}`, { field, errors: [{ field, message: detail }] });
  }
}

/** A referenced thing does not exist. */
export class NotFoundError extends AppError {
  constructor(what: string) {
    super(404, 'not-found', `${what} not found`);
  }
}

/** A write conflicts with existing data (duplicate identifier, the last owner, ...). */
export class ConflictError extends AppError {
  constructor(message: string) {
    super(409, 'conflict', message);
  }
}

/** The account's email is taken (case-insensitively). */
export class DuplicateEmailError extends AppError {
  constructor() {
    super(409, 'conflict', 'an account with this email already exists', { field: 'email' });
  }
}

/** The one acting may not do what they asked. */
export class ForbiddenError extends AppError {
  constructor(message = 'you may not do this') {
    super(403, 'forbidden', message);
  }
}

/** A request body that cannot be read: 400 unparseable or incomplete, 413 too large, 415 wrong type. */
export class BodyError extends AppError {
  constructor(status: number, message: string) {
    super(status, status === 413 ? 'payload-too-large' : status === 415 ? 'unsupported-media-type' : 'malformed-request', message);
  }
}

/**
 * A configuration value that stops start-up; the message names the variable. Status 500: it is
 * never the caller's fault, and its text stays in the log.
 */
export class ConfigError extends AppError {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(500, 'config', `${variable} ${message}`);
  }
}

/** Bad usage of the CLI: printed as one line, exit code 2. */
export class UsageError extends AppError {
  constructor(message: string) {
    super(400, 'usage', message);
  }
}

/** `latch import app`: its source or its mapping cannot be read (one line, exit code 1). */
export class ImportError extends AppError {
  constructor(message: string) {
    super(400, 'import', message);
  }
}
