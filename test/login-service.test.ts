import { expect } from 'chai';
import { Secret, TOTP } from 'otpauth';

import { createLoginService, type LoginContext } from '../src/services/login.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const totpCode = (secret: string) => new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 }).generate();

/**
 * services/login.ts over a real database and the server's own services: an account with MFA is
 * never signed in by its password alone, and every security dependency is required by the type.
 */
describe('login service (password step, second step, audit, metrics)', function () {
  this.timeout(60_000);
  let srv: TestServer;
  const at: LoginContext = { ip: '203.0.113.7', clientId: 'some-client', origin: { ip: '203.0.113.7', userAgent: 'test' }, params: {} };
  const recorded: string[] = [];

  before(async () => {
    srv = await startTestServer();
  });

  after(async () => {
    await srv?.close();
  });

  const loginService = () => {
    const { accounts, mfa, loginGuard, audit } = srv.running.services;
    return createLoginService({ accounts, mfa, loginGuard, audit, metrics: { recordLogin: (outcome: string) => void recorded.push(outcome) } });
  };

  it('asks an account with MFA for its second factor after the right password, and signs it in at the MFA level only with a code', async () => {
    const { services } = srv.running;
    const account = await services.accounts.create({ email: 'mfa-user@example.test', password: 'a quiet orchard by the sea' });
    const enrolment = (await services.mfa.beginEnrolment(account))!;
    expect(await services.mfa.confirmEnrolment(account.id, totpCode(enrolment.secret), { actorId: account.id })).to.be.an('array');
    const login = loginService();

    const step = await login.password(account.email, 'a quiet orchard by the sea', at);
    expect(step).to.deep.include({ kind: 'second_step', step: 'code' });
    expect(recorded.at(-1)).to.equal('success');
    const successes = await services.audit.list({ subjectId: account.id, type: 'login.success' });
    expect(successes, 'no sign-in is recorded before the second factor').to.deep.equal([]);

    expect(await login.code(account, account.email, '000000', at)).to.deep.equal({ kind: 'wrong' });
    const failure = (await services.audit.list({ subjectId: account.id, type: 'login.failure' }))[0]!;
    expect(failure).to.deep.include({ clientId: 'some-client', ip: '203.0.113.7', details: { reason: 'invalid_mfa_code' } });

    // A TOTP step already used at enrolment is refused (replay), so take a recovery code.
    const codes = (await services.mfa.regenerateRecoveryCodes(account.id, { actorId: account.id }))!;
    const done = await login.code(account, account.email, codes[0]!, at);
    expect(done).to.deep.equal({ kind: 'signed_in', login: { accountId: account.id, amr: ['pwd', 'otp', 'mfa'], acr: 'urn:latch:loa:2' } });
    const success = (await services.audit.list({ subjectId: account.id, type: 'login.success' }))[0]!;
    expect(success.details).to.deep.equal({ amr: ['pwd', 'otp', 'mfa'], acr: 'urn:latch:loa:2', method: 'recovery_code' });
  });

  it('signs an account without MFA in by password, refuses a wrong one, and makes one insisting on MFA enrol', async () => {
    const { services } = srv.running;
    const account = await services.accounts.create({ email: 'plain@example.test', password: 'bob rides a yellow bicycle' });
    const login = loginService();
    expect(await login.password(account.email, 'not the password at all', at)).to.deep.equal({ kind: 'refused', reason: 'invalid_credentials' });
    expect(recorded.at(-1)).to.equal('invalid_credentials');
    expect(await login.password(account.email, 'bob rides a yellow bicycle', { ...at, params: { acr_values: 'urn:latch:loa:2' } })).to.deep.include({ kind: 'second_step', step: 'enrol' });
    expect(await login.password(account.email, 'bob rides a yellow bicycle', at)).to.deep.equal({ kind: 'signed_in', login: { accountId: account.id, amr: ['pwd'], acr: 'urn:latch:loa:1' } });
  });

  it('requires the login guard, the MFA service, the audit and the metrics in its type', () => {
    const { accounts, mfa, loginGuard, audit } = srv.running.services;
    const metrics = { recordLogin: () => undefined };
    // Each line must stay a type error: a wiring without one of them must not compile.
    // @ts-expect-error the login guard is required
    expect(() => createLoginService({ accounts, mfa, audit, metrics })).to.not.throw();
    // @ts-expect-error the MFA service is required
    expect(() => createLoginService({ accounts, loginGuard, audit, metrics })).to.not.throw();
    // @ts-expect-error the audit is required
    expect(() => createLoginService({ accounts, mfa, loginGuard, metrics })).to.not.throw();
    // @ts-expect-error undefined is no MFA service either
    expect(() => createLoginService({ accounts, mfa: undefined, loginGuard, audit, metrics })).to.not.throw();
  });
});
