/** A bad configuration value: one line naming the variable, which stops start-up. */
export { ConfigError } from '../errors/index.js';
