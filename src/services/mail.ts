import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import nodemailer from 'nodemailer';

import type { Logger } from '../lib/logger.js';
import type { MailKind } from '../repositories/mail-queue.js';

export interface Mail {
  to: string;
  subject: string;
  /** Plain text: every link a full absolute URL on its own line. */
  text: string;
  html?: string;
}

/** What a mail is about: the account page shows the delivery state of its verification mail. */
export interface MailAbout {
  kind: MailKind;
  accountId?: string | null;
}

/** Where the services send mail: the durable queue (services/mail-queue.ts). */
export interface Mailer {
  send(mail: Mail, about?: MailAbout): Promise<void>;
}

/** One delivery attempt, straight to the server: the queue's transport. */
export interface MailTransport {
  send(mail: Mail): Promise<void>;
}

/**
 * Bounds of one SMTP attempt: an unreachable or silent server fails the attempt (and the queue
 * retries it) well within the queue's lease, instead of after nodemailer's minutes.
 */
const SMTP_TIMEOUTS = { connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000 };

/**
 * Sends mail through SMTP_URL with nodemailer. Without it (development), each mail is written
 * to the log and as an .eml file under data/outbox/, so its links can be clicked.
 */
export function createMailTransport(deps: { smtpUrl: string | undefined; from: string; outboxDir: string; logger: Logger }): MailTransport {
  const { smtpUrl, from, outboxDir, logger } = deps;
  if (smtpUrl) {
    const transport = nodemailer.createTransport({ url: smtpUrl, ...SMTP_TIMEOUTS });
    return {
      async send(mail) {
        await transport.sendMail({ from, to: mail.to, subject: mail.subject, text: mail.text, ...(mail.html ? { html: mail.html } : {}) });
      },
    };
  }
  const stream = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    async send(mail) {
      const info = await stream.sendMail({ from, to: mail.to, subject: mail.subject, text: mail.text, ...(mail.html ? { html: mail.html } : {}) });
      mkdirSync(outboxDir, { recursive: true });
      const file = join(outboxDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${Math.random().toString(36).slice(2, 8)}.eml`);
      writeFileSync(file, info.message as Buffer, { mode: 0o600 });
      // Development only (no SMTP_URL): the mail, links included, is shown so it can be used.
      logger.info('mail written to the outbox (SMTP_URL is not set)', { to: mail.to, subject: mail.subject, file, text: mail.text });
    },
  };
}
