/**
 * A real SMTP server in the test process (smtp-server): Latch sends to it through SMTP_URL with
 * nodemailer, exactly as to a production relay; each received message is parsed with mailparser.
 */
import type { AddressInfo } from 'node:net';

import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

import { recordSecret } from './secrets-registry.js';

export interface ReceivedMail {
  /** Envelope recipients (RCPT TO), lowercased. */
  to: string[];
  from: string;
  subject: string;
  text: string;
  html: string | false;
  /** Every line of the plain-text part that is a URL. */
  links: string[];
}

export interface Mailbox {
  /** smtp://127.0.0.1:PORT, for SMTP_URL. */
  url: string;
  mails: ReceivedMail[];
  /** Mails received for `address` so far. */
  to(address: string): ReceivedMail[];
  /** Waits for the `n`th (1-based) mail to `address`, at most `timeoutMs`. */
  waitFor(address: string, n?: number, timeoutMs?: number): Promise<ReceivedMail>;
  /** Waits a moment and returns how many mails `address` got (to assert that none was sent). */
  settle(address: string, ms?: number): Promise<number>;
  close(): Promise<void>;
}

/** `port`: listen there (an outage test starts the server again on the port Latch was given). */
export async function startMailbox(options: { port?: number } = {}): Promise<Mailbox> {
  const mails: ReceivedMail[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((parsed) => {
          const text = parsed.text ?? '';
          mails.push({
            to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()),
            from: parsed.from?.text ?? '',
            subject: parsed.subject ?? '',
            text,
            html: parsed.html ?? false,
            links: text
              .split(/\r?\n/)
              .map((l) => l.trim())
              .filter((l) => /^https?:\/\//.test(l)),
          });
          for (const link of mails[mails.length - 1]!.links) recordSecret('mailed_link', link);
          for (const w of waiters) w();
          callback();
        })
        .catch((err: Error) => callback(err));
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;
  const to = (address: string) => mails.filter((m) => m.to.includes(address.toLowerCase()));
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    to,
    async waitFor(address, n = 1, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = to(address);
        if (got.length >= n) return got[n - 1]!;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no mail #${n} to ${address} within ${timeoutMs} ms (got ${got.length}; all: ${mails.map((m) => `${m.to.join(',')}: ${m.subject}`).join(' | ')})`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, Math.min(left, 200));
          function done() {
            clearTimeout(t);
            waiters.delete(done);
            resolve();
          }
          waiters.add(done);
        });
      }
    },
    async settle(address, ms = 750) {
      await new Promise((r) => setTimeout(r, ms));
      return to(address).length;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
