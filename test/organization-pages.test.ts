/**
 * Organization invitation links (/invitation) and the organization pages of the account area
 * (/account/organizations/:id), over real HTTP against a real server: invitations made with the
 * CLI and mailed through a real SMTP server in-process, browsers (Agent: cookies, real forms with
 * their CSRF fields) signing in through the account page, and every refusal checked for its
 * status: 403 (authorization.ts says no, or no CSRF), 404 (not a member, unknown link), 409 (the
 * last-owner rule), 410 (a link expired, used or withdrawn).
 */
import { expect } from 'chai';

import { Agent, parseForms, type PageResponse } from './helpers/agent.js';
import { startMailbox, type Mailbox } from './helpers/mailbox.js';
import { runCliWith, startTestServer, type TestServer } from './helpers/server.js';

const GOOD_PASSWORD = 'violet kettle orbit 42';

interface User {
  email: string;
  password: string;
  id?: string;
}

const user = (name: string): User => ({ email: `${name}@example.test`, password: `${name} walks the amber lighthouse` });

const formIndex = (res: PageResponse, action: RegExp) => parseForms(res.body, res.url).findIndex((f) => action.test(new URL(f.action).pathname));
const hasForm = (res: PageResponse, action: RegExp) => formIndex(res, action) >= 0;
const csrfOf = (res: PageResponse) => parseForms(res.body, res.url).find((f) => f.fields._csrf)?.fields._csrf ?? '';
const tokenOf = (url: string) => new URL(url).searchParams.get('token')!;

/** Follows `url` as a browser; signs in on Latch's login page when it shows up. */
async function openSignedIn(agent: Agent, url: string, who: User): Promise<PageResponse> {
  let res = await agent.follow(url);
  for (let i = 0; i < 3 && /name="password"/.test(res.body) && /\/login"/.test(res.body); i++) {
    res = await agent.submit(res, formIndex(res, /\/login$/), { email: who.email, password: who.password });
  }
  return res;
}

/** Posts form `action` of `page` (hidden fields and CSRF included) plus `values`, following redirects. */
async function post(agent: Agent, page: PageResponse, action: RegExp, values: Record<string, string> = {}, which = 0): Promise<PageResponse> {
  const forms = parseForms(page.body, page.url)
    .map((f, i) => ({ f, i }))
    .filter(({ f }) => action.test(new URL(f.action).pathname));
  const chosen = forms[which];
  if (!chosen) throw new Error(`no form ${String(action)} on ${page.url} (${page.status}): ${page.body.slice(0, 600)}`);
  return agent.submit(page, chosen.i, values);
}

describe('organization invitations and pages', function () {
  this.timeout(60_000);
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
  });
  after(async () => {
    await mailbox.close();
  });

  describe('REGISTRATION=open', () => {
    let srv: TestServer;
    let acmeId: string;
    let workerId: string;
    const owner = user('olivia');
    const admin = user('adam');
    const member = user('mia');
    const viewer = user('victor');
    const outsider = user('oscar');
    const joiner = user('jane');
    const decliner = user('dora');
    const late = user('lara');
    const root = user('root');

    const invite = async (email: string, role = 'viewer', org = 'acme') => {
      const r = await runCliWith(srv.env, ['orgs', 'invite', '--org', org, '--email', email, '--role', role]);
      expect(r.code, r.stderr).to.equal(0);
      return r.json as { id: string; invitation_url: string; role: string; status: string; email: string };
    };
    const invitationRow = (id: string) => srv.running.db('organization_invitations').where({ id }).first() as Promise<{ status: string; expires_at: string } | undefined>;
    const roleOf = async (email: string, org = acmeId): Promise<string | null> => {
      const account = await srv.running.services.accounts.findByEmail(email);
      const m = account ? await srv.running.services.organizations.membership(org, { kind: 'account', id: account.id }) : undefined;
      return m?.role ?? null;
    };
    const orgUrl = () => `${srv.url}/account/organizations/${acmeId}`;

    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'open', SMTP_URL: mailbox.url } });
      for (const u of [owner, admin, member, viewer, outsider, joiner, decliner, late]) {
        const r = await srv.cli('users', 'create', '--email', u.email, '--password', u.password);
        expect(r.code, r.stderr).to.equal(0);
        u.id = r.json.id;
      }
      const su = await srv.cli('users', 'create', '--email', root.email, '--password', root.password, '--superuser');
      expect(su.code, su.stderr).to.equal(0);
      const org = await srv.cli('orgs', 'create', '--name', 'Acme Corp', '--slug', 'acme', '--owner', owner.email);
      expect(org.code, org.stderr).to.equal(0);
      acmeId = org.json.id;
      for (const [u, role] of [
        [admin, 'admin'],
        [member, 'member'],
        [viewer, 'viewer'],
      ] as const) {
        const r = await srv.cli('orgs', 'members', 'add', '--org', 'acme', '--user', u.email, '--role', role);
        expect(r.code, r.stderr).to.equal(0);
      }
      const worker = await srv.cli('clients', 'create', '--name', 'worker', '--grant', 'client_credentials');
      expect(worker.code, worker.stderr).to.equal(0);
      workerId = worker.json.client_id;
      const wm = await srv.cli('orgs', 'members', 'add', '--org', 'acme', `--client=${workerId}`, '--role', 'member');
      expect(wm.code, wm.stderr).to.equal(0);
      const other = await srv.cli('orgs', 'create', '--name', 'Globex', '--slug', 'globex', '--owner', outsider.email);
      expect(other.code, other.stderr).to.equal(0);
    });

    after(async () => {
      expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
      await srv.close();
    });

    it('the CLI invites and mails the link; opening it (twice) shows organization and role and does not use it up', async () => {
      const inv = await invite(joiner.email);
      expect(inv.invitation_url.startsWith(`${srv.url}/invitation?token=`)).to.equal(true);
      expect(inv.status).to.equal('pending');
      const mail = await mailbox.waitFor(joiner.email);
      expect(mail.links).to.include(inv.invitation_url);
      expect(mail.subject).to.contain('Acme Corp');

      // A mail scanner and then the person: both GETs leave the link usable.
      const scanner = await new Agent().request(inv.invitation_url);
      const agent = new Agent();
      const page = await agent.request(inv.invitation_url);
      for (const res of [scanner, page]) {
        expect(res.status, res.body.slice(0, 400)).to.equal(200);
        expect(res.body).to.contain('Acme Corp');
        expect(res.body).to.match(/id="invitation-role">viewer</);
        expect(res.headers.get('cache-control')).to.equal('no-store');
      }
      expect((await invitationRow(inv.id))!.status).to.equal('pending');

      // The address has an account: sign in to accept, on the account page, and back.
      expect(page.body).to.contain('Sign in to accept');
      expect(hasForm(page, /^\/invitation$/)).to.equal(false);
      const href = /id="sign-in-to-accept" href="([^"]+)"/.exec(page.body)![1]!;
      expect(href).to.equal(`/account/invitation/${tokenOf(inv.invitation_url)}`);
      const signedIn = await openSignedIn(agent, `${srv.url}${href}`, joiner);
      expect(signedIn.status, signedIn.body.slice(0, 400)).to.equal(200);
      expect(signedIn.url).to.equal(`${srv.url}${href}`);
      expect(hasForm(signedIn, /^\/account\/invitations\/accept$/)).to.equal(true);
      expect(hasForm(signedIn, /^\/account\/invitations\/decline$/)).to.equal(true);
      expect((await invitationRow(inv.id))!.status).to.equal('pending');

      // Accept: member with the invited role, on the organization page.
      const joined = await post(agent, signedIn, /^\/account\/invitations\/accept$/);
      expect(joined.status, joined.body.slice(0, 400)).to.equal(200);
      expect(joined.url).to.contain(`/account/organizations/${acmeId}`);
      expect(joined.body).to.contain('You joined Acme Corp.');
      expect(await roleOf(joiner.email)).to.equal('viewer');
      expect((await invitationRow(inv.id))!.status).to.equal('accepted');

      // Single use: the same form again, and the link, say so.
      const again = await post(agent, signedIn, /^\/account\/invitations\/accept$/);
      expect(again.status).to.equal(410);
      expect(again.body).to.contain('already used');
      const link = await new Agent().request(inv.invitation_url);
      expect(link.status).to.equal(410);
      expect(link.body).to.contain('already used');
      const signedLink = await agent.request(`${srv.url}${href}`);
      expect(signedLink.status).to.equal(410);
    });

    it('unknown and malformed links get 404; an expired link 410, and it cannot be accepted', async () => {
      const agent = new Agent();
      for (const q of ['', '?token=', '?token=not-a-real-token-but-long-enough', `?token=${'x'.repeat(5000)}`, '?token=%00%01', '?token[]=a&token[]=b', '?token=%E0%A4%A']) {
        const res = await agent.request(`${srv.url}/invitation${q}`);
        expect(res.status, q).to.equal(404);
        expect(res.body).to.contain('Invitation not found');
      }
      const inv = await invite(late.email, 'member');
      await srv.running.db('organization_invitations').where({ id: inv.id }).update({ expires_at: new Date(Date.now() - 1000).toISOString() });
      const res = await agent.request(inv.invitation_url);
      expect(res.status).to.equal(410);
      expect(res.body).to.contain('expired');
      // Not offered on the account page, and a forged accept is refused.
      const account = await openSignedIn(agent, `${srv.url}/account`, late);
      expect(account.status).to.equal(200);
      expect(account.body).to.not.contain(inv.id);
      const forged = await agent.request(`${srv.url}/account/invitations/accept`, { form: { _csrf: csrfOf(account), id: inv.id } });
      expect(forged.status).to.equal(410);
      expect(await roleOf(late.email)).to.equal(null);
      expect((await agent.request(`${srv.url}/account/invitation/${tokenOf(inv.invitation_url)}`)).status).to.equal(410);
    });

    it('the account page lists organizations and pending invitations; decline works once', async () => {
      const inv = await invite(decliner.email, 'member');
      const agent = new Agent();
      const account = await openSignedIn(agent, `${srv.url}/account`, decliner);
      expect(account.status).to.equal(200);
      expect(account.body).to.contain('id="invitations"');
      expect(account.body).to.contain('Acme Corp');
      expect(account.body).to.match(/As member; valid until \d{4}-\d\d-\d\d/);
      const declined = await post(agent, account, /^\/account\/invitations\/decline$/);
      expect(declined.status).to.equal(200);
      expect(declined.url).to.equal(`${srv.url}/account?done=invitation-declined`);
      expect(declined.body).to.contain('The invitation was declined.');
      expect((await invitationRow(inv.id))!.status).to.equal('declined');
      expect(await roleOf(decliner.email)).to.equal(null);
      // Declined is final.
      const accept = await post(agent, account, /^\/account\/invitations\/accept$/);
      expect(accept.status).to.equal(410);
      expect((await new Agent().request(inv.invitation_url)).status).to.equal(410);

      // Memberships: name, slug, role, link to the organization page.
      const owned = await openSignedIn(new Agent(), `${srv.url}/account`, owner);
      expect(owned.body).to.contain(`href="/account/organizations/${acmeId}"`);
      expect(owned.body).to.contain('<code>acme</code>');
      expect(owned.body).to.contain('Your role: owner');
    });

    it('accept and decline refuse an invitation addressed to someone else; the signed-in page says so', async () => {
      const inv = await invite('someone.new@example.test', 'admin');
      const agent = new Agent();
      const page = await openSignedIn(agent, `${srv.url}/account/invitation/${tokenOf(inv.invitation_url)}`, outsider);
      expect(page.status).to.equal(403);
      expect(page.body).to.contain('You are signed in as');
      expect(hasForm(page, /^\/account\/invitations\/accept$/)).to.equal(false);
      for (const path of ['/account/invitations/accept', '/account/invitations/decline']) {
        const forged = await agent.request(`${srv.url}${path}`, { form: { _csrf: csrfOf(page), id: inv.id } });
        expect(forged.status, path).to.equal(404);
      }
      for (const id of ['', 'nope', 'x'.repeat(70000).slice(0, 60000)]) {
        const res = await agent.request(`${srv.url}/account/invitations/accept`, { form: { _csrf: csrfOf(page), id } });
        expect(res.status).to.be.oneOf([404, 413]);
      }
      expect((await invitationRow(inv.id))!.status).to.equal('pending');
      // Without the CSRF field: 403.
      const noCsrf = await agent.request(`${srv.url}/account/invitations/accept`, { form: { id: inv.id } });
      expect(noCsrf.status).to.equal(403);
    });

    it('a new address creates its account (verified) from the link and joins; the link then is used', async () => {
      const email = 'Newbie@Example.test';
      const inv = await invite(email, 'member');
      await mailbox.waitFor(email);
      const agent = new Agent();
      const page = await agent.request(inv.invitation_url);
      expect(page.status).to.equal(200);
      expect(page.body).to.match(/id="email"[^>]*value="Newbie@Example.test"[^>]*readonly/);
      expect(page.body).to.not.contain('Sign in to accept');
      // The password policy applies.
      const weak = await post(agent, page, /^\/invitation$/, { password: 'password123' });
      expect(weak.status).to.equal(400);
      expect(weak.body).to.contain('id="password-error"');
      expect(await srv.running.services.accounts.findByEmail(email)).to.equal(undefined);
      // No CSRF: 403, nothing created.
      const noCsrf = await agent.request(`${srv.url}/invitation`, { form: { token: tokenOf(inv.invitation_url), password: GOOD_PASSWORD } });
      expect(noCsrf.status).to.equal(403);
      const done = await post(agent, page, /^\/invitation$/, { password: GOOD_PASSWORD, name: 'New Bie' });
      expect(done.status, done.body.slice(0, 500)).to.equal(200);
      expect(done.body).to.contain('You joined Acme Corp');
      expect(done.body).to.contain('href="/account"');
      const account = (await srv.running.services.accounts.findByEmail(email))!;
      expect(account.emailVerified).to.equal(true);
      expect(account.displayName).to.equal('New Bie');
      expect(await roleOf(email)).to.equal('member');
      // Second POST: used.
      const again = await post(agent, page, /^\/invitation$/, { password: GOOD_PASSWORD });
      expect(again.status).to.equal(410);
      expect(again.body).to.contain('already used');
      // The new account signs in on the account page and sees the organization.
      const acc = await openSignedIn(new Agent(), `${srv.url}/account`, { email, password: GOOD_PASSWORD });
      expect(acc.status).to.equal(200);
      expect(acc.body).to.contain('Your role: member');
    });

    it('an owner invites, changes roles, removes members and revokes invitations from the organization page', async () => {
      const agent = new Agent();
      const page = await openSignedIn(agent, orgUrl(), owner);
      expect(page.status, page.body.slice(0, 400)).to.equal(200);
      expect(page.body).to.contain('Acme Corp');
      expect(page.body).to.contain(`client ${workerId}`);
      expect(page.body).to.contain('id="org-invitations"');
      expect(hasForm(page, /\/invitations$/)).to.equal(true);
      expect(hasForm(page, /\/members\/role$/)).to.equal(true);
      expect(hasForm(page, /\/members\/remove$/)).to.equal(true);
      expect(page.body).to.match(/<option value="owner"/);

      const email = 'carl@example.test';
      const invited = await post(agent, page, /\/invitations$/, { email, role: 'member' });
      expect(invited.status).to.equal(200);
      expect(invited.body).to.contain('The invitation was sent.');
      const mail = await mailbox.waitFor(email);
      const url = mail.links.find((l) => l.startsWith(`${srv.url}/invitation?token=`))!;
      expect(url).to.be.a('string');
      expect((await new Agent().request(url)).status).to.equal(200);
      const bad = await post(agent, invited, /\/invitations$/, { email: 'not an address', role: 'member' });
      expect(bad.status).to.equal(400);
      expect(bad.body).to.contain('id="invite-error"');
      const badRole = await post(agent, invited, /\/invitations$/, { email: 'x@example.test', role: 'emperor' });
      expect(badRole.status).to.equal(400);

      // Revoke: the link is then withdrawn (410).
      const row = (await srv.running.db('organization_invitations').where({ email }).first()) as { id: string };
      const revoked = await post(agent, invited, /\/invitations\/revoke$/, { invitation: row.id });
      expect(revoked.status).to.equal(200);
      expect(revoked.body).to.contain('The invitation was revoked.');
      const gone = await new Agent().request(url);
      expect(gone.status).to.equal(410);
      expect(gone.body).to.contain('withdrawn');
      const twice = await agent.request(`${orgUrl()}/invitations/revoke`, { form: { _csrf: csrfOf(revoked), invitation: row.id } });
      expect(twice.status).to.equal(409);

      // Change a role, then remove a member (the joiner of the first test).
      const changed = await post(agent, revoked, /\/members\/role$/, { member: `account:${joiner.id!}`, role: 'member' });
      expect(changed.status).to.equal(200);
      expect(changed.body).to.contain('The role was changed.');
      expect(await roleOf(joiner.email)).to.equal('member');
      const removed = await agent.request(`${orgUrl()}/members/remove`, { form: { _csrf: csrfOf(changed), member: `account:${joiner.id!}` } });
      expect(removed.status).to.equal(303);
      expect(await roleOf(joiner.email)).to.equal(null);
      const missing = await agent.request(`${orgUrl()}/members/remove`, { form: { _csrf: csrfOf(changed), member: `account:${joiner.id!}` } });
      expect(missing.status).to.equal(404);
      const garbage = await agent.request(`${orgUrl()}/members/role`, { form: { _csrf: csrfOf(changed), member: 'bogus', role: 'member' } });
      expect(garbage.status).to.equal(404);
    });

    it('an admin manages members but cannot touch an owner or make one', async () => {
      const agent = new Agent();
      const page = await openSignedIn(agent, orgUrl(), admin);
      expect(page.status).to.equal(200);
      expect(hasForm(page, /\/invitations$/)).to.equal(true);
      // No form on the owner's row, no "owner" among the roles offered.
      const ownerRow = new RegExp(`<li class="member" data-member="account:${owner.id!}">([\\s\\S]*?)</li>`).exec(page.body)![1]!;
      expect(ownerRow).to.not.contain('<form');
      expect(page.body).to.not.match(/<option value="owner"/);
      const csrf = csrfOf(page);
      const tries: [string, Record<string, string>][] = [
        ['/invitations', { email: 'boss@example.test', role: 'owner' }],
        ['/members/role', { member: `account:${owner.id!}`, role: 'member' }],
        ['/members/role', { member: `account:${member.id!}`, role: 'owner' }],
        ['/members/remove', { member: `account:${owner.id!}` }],
      ];
      for (const [path, form] of tries) {
        const res = await agent.request(`${orgUrl()}${path}`, { form: { _csrf: csrf, ...form } });
        expect(res.status, `${path} ${JSON.stringify(form)}`).to.equal(403);
        expect(res.body).to.contain('Not allowed');
      }
      expect(await roleOf(owner.email)).to.equal('owner');
      expect(await roleOf(member.email)).to.equal('member');
      // What an admin may do: invite a viewer, change a member's role.
      const ok = await post(agent, page, /\/invitations$/, { email: 'vera@example.test', role: 'viewer' });
      expect(ok.status).to.equal(200);
      const role = await agent.request(`${orgUrl()}/members/role`, { form: { _csrf: csrf, member: `account:${member.id!}`, role: 'viewer' } });
      expect(role.status).to.equal(303);
      expect(await roleOf(member.email)).to.equal('viewer');
      const back = await agent.request(`${orgUrl()}/members/role`, { form: { _csrf: csrf, member: `account:${member.id!}`, role: 'member' } });
      expect(back.status).to.equal(303);
    });

    it('members and viewers see the organization without forms; forged POSTs get 403', async () => {
      for (const who of [member, viewer]) {
        const agent = new Agent();
        const page = await openSignedIn(agent, orgUrl(), who);
        expect(page.status).to.equal(200);
        expect(page.body).to.contain(owner.email);
        expect(page.body).to.contain(`client ${workerId}`);
        for (const action of [/\/invitations$/, /\/members\/role$/, /\/members\/remove$/, /\/invitations\/revoke$/]) expect(hasForm(page, action), String(action)).to.equal(false);
        expect(page.body).to.not.contain('id="org-invitations"');
        expect(hasForm(page, /\/leave$/)).to.equal(true);
        const csrf = csrfOf(page);
        const pending = await invite(`pending-${who.id!}@example.test`, 'viewer');
        const tries: [string, Record<string, string>][] = [
          ['/invitations', { email: 'sneaky@example.test', role: 'viewer' }],
          ['/members/role', { member: `account:${admin.id!}`, role: 'viewer' }],
          ['/members/remove', { member: `account:${admin.id!}` }],
          ['/invitations/revoke', { invitation: pending.id }],
        ];
        for (const [path, form] of tries) {
          const res = await agent.request(`${orgUrl()}${path}`, { form: { _csrf: csrf, ...form } });
          expect(res.status, `${who.email} ${path}`).to.equal(403);
        }
        expect(await roleOf(admin.email)).to.equal('admin');
        expect((await invitationRow(pending.id))!.status).to.equal('pending');
        expect(await srv.running.db('organization_invitations').where({ email: 'sneaky@example.test' })).to.have.length(0);
      }
    });

    it('the last owner can neither leave nor be demoted (409 on the page); other members may leave', async () => {
      const agent = new Agent();
      const page = await openSignedIn(agent, orgUrl(), owner);
      const leave = await post(agent, page, /\/leave$/);
      expect(leave.status).to.equal(409);
      expect(leave.body).to.contain('id="form-error"');
      expect(leave.body).to.contain('last owner');
      const demote = await agent.request(`${orgUrl()}/members/role`, { form: { _csrf: csrfOf(page), member: `account:${owner.id!}`, role: 'admin' } });
      expect(demote.status).to.equal(409);
      expect(demote.body).to.contain('last owner');
      expect(await roleOf(owner.email)).to.equal('owner');

      // The viewer leaves.
      const v = new Agent();
      const vp = await openSignedIn(v, orgUrl(), viewer);
      const left = await post(v, vp, /\/leave$/);
      expect(left.status).to.equal(200);
      expect(left.url).to.equal(`${srv.url}/account?done=organization-left`);
      expect(left.body).to.contain('You left the organization.');
      expect(await roleOf(viewer.email)).to.equal(null);
      // Now a non-member: 404.
      expect((await v.request(orgUrl())).status).to.equal(404);
    });

    it('non-members get 404 for the page and every form; bad ids get 404, never a 500', async () => {
      const agent = new Agent();
      const page = await openSignedIn(agent, orgUrl(), outsider);
      expect(page.status).to.equal(404);
      expect(page.body).to.not.contain('Acme Corp');
      const bySlug = await agent.request(`${srv.url}/account/organizations/acme`);
      expect(bySlug.status).to.equal(404);
      const csrf = csrfOf(await agent.request(`${srv.url}/account`));
      for (const path of ['/invitations', '/members/role', '/members/remove', '/invitations/revoke', '/leave']) {
        const res = await agent.request(`${orgUrl()}${path}`, { form: { _csrf: csrf, email: 'x@example.test', role: 'viewer', member: `account:${outsider.id!}` } });
        expect(res.status, path).to.equal(404);
      }
      for (const id of ['00000000-0000-0000-0000-000000000000', 'nope', 'x'.repeat(300), '%E0%A4%A', '%00', 'NOT-A-SLUG!']) {
        const res = await agent.request(`${srv.url}/account/organizations/${id}`);
        expect(res.status, id).to.equal(404);
      }
      // Their own organization they see, by id or slug.
      expect((await agent.request(`${srv.url}/account/organizations/globex`)).status).to.equal(200);
      // CSRF missing on an organization form: 403 before anything else.
      const noCsrf = await agent.request(`${orgUrl()}/leave`, { method: 'POST', form: {} });
      expect(noCsrf.status).to.equal(403);
    });

    it('a superuser manages an organization they are not a member of', async () => {
      const agent = new Agent();
      const page = await openSignedIn(agent, orgUrl(), root);
      expect(page.status).to.equal(200);
      expect(hasForm(page, /\/invitations$/)).to.equal(true);
      expect(hasForm(page, /\/leave$/)).to.equal(false);
      const res = await agent.request(`${orgUrl()}/members/role`, { form: { _csrf: csrfOf(page), member: `client:${workerId}`, role: 'viewer' } });
      expect(res.status).to.equal(303);
      const m = await srv.running.services.organizations.membership(acmeId, { kind: 'client', id: workerId });
      expect(m!.role).to.equal('viewer');
    });

    it('an organization page opened signed out comes back to it after signing in', async () => {
      const agent = new Agent();
      const first = await agent.request(orgUrl());
      expect(first.status).to.equal(302);
      const res = await openSignedIn(agent, orgUrl(), admin);
      expect(res.url).to.equal(orgUrl());
      expect(res.status).to.equal(200);
    });
  });

  describe('REGISTRATION=invite', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'invite', SMTP_URL: mailbox.url } });
      await srv.cli('users', 'create', '--email', 'boss@example.test', '--password', GOOD_PASSWORD);
      const org = await srv.cli('orgs', 'create', '--name', 'Initech', '--slug', 'initech', '--owner', 'boss@example.test');
      expect(org.code, org.stderr).to.equal(0);
    });
    after(async () => {
      expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
      await srv.close();
    });

    it('an organization invitation creates the account of a new address', async () => {
      const email = 'peter@example.test';
      const r = await runCliWith(srv.env, ['orgs', 'invite', '--org', 'initech', '--email', email, '--role', 'admin']);
      expect(r.code, r.stderr).to.equal(0);
      const mail = await mailbox.waitFor(email);
      expect(mail.links).to.include(r.json.invitation_url);
      const agent = new Agent();
      const page = await agent.request(r.json.invitation_url);
      expect(page.status).to.equal(200);
      expect(hasForm(page, /^\/invitation$/)).to.equal(true);
      const done = await post(agent, page, /^\/invitation$/, { password: GOOD_PASSWORD });
      expect(done.status, done.body.slice(0, 400)).to.equal(200);
      expect(done.body).to.contain('You joined Initech');
      const account = (await srv.running.services.accounts.findByEmail(email))!;
      expect(account.emailVerified).to.equal(true);
      const m = await srv.running.services.organizations.membership(r.json.organization_id, { kind: 'account', id: account.id });
      expect(m!.role).to.equal('admin');
    });
  });

  describe('REGISTRATION=closed', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ env: { REGISTRATION: 'closed', SMTP_URL: mailbox.url } });
      await srv.cli('users', 'create', '--email', 'boss@example.test', '--password', GOOD_PASSWORD);
      await srv.cli('users', 'create', '--email', 'known@example.test', '--password', GOOD_PASSWORD);
      const org = await srv.cli('orgs', 'create', '--name', 'Hooli', '--slug', 'hooli', '--owner', 'boss@example.test');
      expect(org.code, org.stderr).to.equal(0);
    });
    after(async () => {
      expect(srv.errors(), JSON.stringify(srv.errors())).to.deep.equal([]);
      await srv.close();
    });

    it('only an existing account can accept: no sign-up form, a forged sign-up is refused', async () => {
      const email = 'gavin@example.test';
      const r = await runCliWith(srv.env, ['orgs', 'invite', '--org', 'hooli', '--email', email, '--role', 'member']);
      expect(r.code, r.stderr).to.equal(0);
      const agent = new Agent();
      const page = await agent.request(r.json.invitation_url);
      expect(page.status).to.equal(200);
      expect(page.body).to.contain('id="invitation-closed"');
      expect(hasForm(page, /^\/invitation$/)).to.equal(false);
      const forged = await agent.request(`${srv.url}/invitation`, { form: { _csrf: csrfOf(await agent.request(`${srv.url}/forgot-password`)), token: tokenOf(r.json.invitation_url), password: GOOD_PASSWORD } });
      expect(forged.status).to.equal(403);
      expect(await srv.running.services.accounts.findByEmail(email)).to.equal(undefined);
      expect(((await srv.running.db('organization_invitations').where({ id: r.json.id }).first()) as { status: string }).status).to.equal('pending');

      // An existing account accepts through the account page.
      const known = await runCliWith(srv.env, ['orgs', 'invite', '--org', 'hooli', '--email', 'known@example.test', '--role', 'member']);
      const kp = await agent.request(known.json.invitation_url);
      expect(kp.body).to.contain('Sign in to accept');
      const signed = await openSignedIn(agent, `${srv.url}/account/invitation/${tokenOf(known.json.invitation_url)}`, { email: 'known@example.test', password: GOOD_PASSWORD });
      const joined = await post(agent, signed, /^\/account\/invitations\/accept$/);
      expect(joined.status).to.equal(200);
      expect(joined.body).to.contain('You joined Hooli.');
    });
  });
});
