import { expect } from 'chai';

import { AppError, BodyError, ConfigError, ConflictError, DuplicateEmailError, ForbiddenError, NotFoundError, UsageError, ValidationError } from '../src/errors/index.js';
import { createBodyValidators, loadOpenApi } from '../src/middleware/api-body.js';
import { ProblemError, toProblem } from '../src/middleware/api-problem.js';
import { startApiHarness, type ApiHarness } from './helpers/api.js';

describe('one error type (AppError) and schema-first input', function () {
  this.timeout(60_000);

  describe('AppError', () => {
    it('every domain error is an AppError with its status, stable code and expose = status < 500', () => {
      const cases: [AppError, number, string][] = [
        [new ValidationError('email', 'is not valid'), 422, 'validation'],
        [new NotFoundError('user x'), 404, 'not-found'],
        [new ConflictError('taken'), 409, 'conflict'],
        [new DuplicateEmailError(), 409, 'conflict'],
        [new ForbiddenError(), 403, 'forbidden'],
        [new BodyError(400, 'incomplete body'), 400, 'malformed-request'],
        [new BodyError(413, 'too large'), 413, 'payload-too-large'],
        [new BodyError(415, 'not JSON'), 415, 'unsupported-media-type'],
        [new ProblemError(405, 'method-not-allowed', 'no'), 405, 'method-not-allowed'],
        [new UsageError('bad flag'), 400, 'usage'],
        [new ConfigError('PORT', 'must be a port'), 500, 'config'],
      ];
      for (const [err, status, code] of cases) {
        expect(err, err.name).to.be.instanceOf(AppError).and.instanceOf(Error);
        expect({ status: err.status, code: err.code, expose: err.expose }, err.name).to.deep.equal({ status, code, expose: status < 500 });
      }
      expect(new ValidationError('email', 'is not valid')).to.include({ field: 'email', message: 'email is not valid', detail: 'is not valid' });
      expect(new NotFoundError('user x').name).to.equal('NotFoundError');
    });

    it('the problem renderer reads any exposed AppError; server errors and foreign errors render nothing', () => {
      expect(toProblem(new ValidationError('email', 'is not valid'))).to.deep.equal({ status: 422, type: 'validation', detail: 'email is not valid', errors: [{ field: 'email', message: 'is not valid' }], headers: undefined });
      expect(toProblem(new DuplicateEmailError())).to.deep.include({ status: 409, type: 'conflict', detail: 'an account with this email already exists', errors: undefined });
      expect(toProblem(new ForbiddenError('no'))).to.deep.include({ status: 403, type: 'forbidden', detail: 'no' });
      // A code that is no problem type of the API takes the slug of its status.
      expect(toProblem(new UsageError('bad flag'))).to.deep.include({ status: 400, type: 'malformed-request' });
      expect(toProblem(new ConfigError('PORT', 'must be a port'))).to.equal(undefined);
      expect(toProblem(new Error('boom'))).to.equal(undefined);
      expect(toProblem('boom')).to.equal(undefined);
    });
  });

  describe('request-body schemas of openapi.yaml', () => {
    it('refuses at start a request schema with an unbounded string or array', () => {
      const unbounded = loadOpenApi().doc;
      const schemas = (unbounded.components as { schemas: Record<string, { properties: Record<string, Record<string, unknown>> }> }).schemas;
      expect(() => createBodyValidators(unbounded)).to.not.throw();
      delete schemas.MeUpdate!.properties.name!.maxLength;
      expect(() => createBodyValidators(unbounded)).to.throw(/PATCH \/api\/v1\/me .*name is a string without maxLength/);
      const again = loadOpenApi().doc;
      delete (again.components as typeof unbounded.components & { schemas: typeof schemas }).schemas.PersonalAccessTokenCreate!.properties.scopes!.maxItems;
      expect(() => createBodyValidators(again)).to.throw(/scopes is an array without maxItems/);
    });

    describe('on a real server', () => {
      let h: ApiHarness;
      before(async () => {
        h = await startApiHarness();
      });
      after(async () => {
        await h?.close();
      });

      const errorsOf = async (method: string, path: string, body: unknown) => {
        const r = await h.call(method, path, { token: h.admin, body });
        expect(r.status, JSON.stringify(r.json)).to.equal(422);
        expect(r.json.type).to.equal('https://latch.dev/problems/validation');
        return r.json.errors as { field: string; message: string }[];
      };

      it('names every offending field once, in the words of the schema', async () => {
        expect(await errorsOf('POST', '/api/v1/users', { email: 5, password: 'x'.repeat(1025), superuser: 'yes', roles: ['a', 7], nick: 1 })).to.have.deep.members([
          { field: 'email', message: 'must be a string' },
          { field: 'password', message: 'must be at most 1024 characters' },
          { field: 'superuser', message: 'must be true or false' },
          { field: 'roles', message: 'must be an array of strings' },
          { field: 'nick', message: 'is not a known field' },
        ]);
        expect(await errorsOf('POST', '/api/v1/users', { password: 'long enough password' })).to.deep.equal([{ field: 'email', message: 'is required' }]);
        expect(await errorsOf('POST', '/api/v1/users', { email: ' ', send_invitation: true })).to.deep.equal([{ field: 'email', message: 'must not be empty' }]);
        expect(await errorsOf('POST', '/api/v1/users', { email: 'a@example.test' })).to.deep.equal([{ field: 'password', message: 'is required unless send_invitation is true' }]);
        expect(await errorsOf('POST', '/api/v1/clients', { name: 'x', grant_types: ['implicit'], redirect_uris: Array.from({ length: 51 }, (_, i) => `https://x.test/${i}`), public: 'no' })).to.have.deep.members([
          { field: 'grant_types', message: 'items must be authorization_code, refresh_token, client_credentials, device_code or token_exchange' },
          { field: 'redirect_uris', message: 'must have at most 50 items' },
          { field: 'public', message: 'must be true or false' },
        ]);
        const client = (await h.call('POST', '/api/v1/clients', { token: h.admin, body: { name: 'overlap', grant_types: ['client_credentials'] } })).json;
        expect(await errorsOf('POST', `/api/v1/clients/${client.id}/rotate-secret`, { overlap_seconds: 604_801 })).to.deep.equal([{ field: 'overlap_seconds', message: 'must be between 0 and 604800' }]);
        expect(await errorsOf('POST', '/api/v1/resources', { identifier: 'https://a.example.test/\u0000', scopes: ['a\u0000'] })).to.have.deep.members([
          { field: 'identifier', message: 'must not contain NUL characters' },
          { field: 'scopes', message: 'items must not contain NUL characters' },
        ]);
        const role = (await h.call('POST', '/api/v1/roles', { token: h.admin, body: { name: 'walker' } })).json;
        expect(await errorsOf('POST', `/api/v1/roles/${role.id}/assign`, { user_id: h.root.id, client_id: 'x' })).to.deep.equal([{ field: 'user_id', message: 'give exactly one of user_id or client_id' }]);
        expect(await errorsOf('POST', `/api/v1/roles/${role.id}/assign`, {})).to.deep.equal([{ field: 'user_id', message: 'give exactly one of user_id or client_id' }]);
        expect(await errorsOf('POST', '/api/v1/keys/rotate', { alg: 'RS256' })).to.deep.equal([{ field: 'alg', message: 'is not a known field' }]);
      });

      it('adds what only the route can tell (an unknown user) to the same 422', async () => {
        expect(await errorsOf('POST', '/api/v1/organizations', { name: 7, slug: 'walkers', owner_id: 'nobody' })).to.have.deep.members([
          { field: 'name', message: 'must be a string' },
          { field: 'owner_id', message: 'is not a user' },
        ]);
      });
    });
  });
});
