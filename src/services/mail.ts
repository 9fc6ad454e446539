import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import nodemailer from 'nodemailer';

import type { Logger } from '../lib/logger.js';

export interface Mail {
  to: string;
  subject: string;
  /** Plain text: every link a full absolute URL on its own line. */
  text: string;
  html?: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
}

/**
 * Sends mail through SMTP_URL with nodemailer. Without it (development), each mail is written
 * to the log and as an .eml file under data/outbox/, so its links can be clicked.
 */
export function createMailer(deps: { smtpUrl: string | undefined; from: string; outboxDir: string; logger: Logger }): Mailer {
  const { smtpUrl, from, outboxDir, logger } = deps;
  if (smtpUrl) {
    const transport = nodemailer.createTransport(smtpUrl);
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
