/** The services' errors live with every other error in src/errors (one base class, AppError). */
export { AppError, ConflictError, NotFoundError, ValidationError } from '../errors/index.js';
