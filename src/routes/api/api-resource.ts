/** The API's own resource server is registered by services/bootstrap.ts; the routes read its name. */
export { API_RESOURCE_SCOPES, apiAudience } from '../../services/bootstrap.js';
