/** Bad input to a service, naming the offending field. Pages, CLI and APIs render it their way. */
export class ValidationError extends Error {
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field} ${detail}`);
    this.name = 'ValidationError';
  }
}

/** A referenced thing does not exist. */
export class NotFoundError extends Error {
  constructor(what: string) {
    super(`${what} not found`);
    this.name = 'NotFoundError';
  }
}

/** A write conflicts with existing data (duplicate identifier, ...). */
export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}
