import { ZxcvbnFactory, type ZxcvbnResult } from '@zxcvbn-ts/core';
import * as zxcvbnCommon from '@zxcvbn-ts/language-common';

import { MAX_PASSWORD_LENGTH } from './passwords.js';

/** Shortest password accepted for a new account or a reset (NIST SP 800-63B §5.1.1.2 asks for 8; we ask 10). */
export const MIN_PASSWORD_LENGTH = 10;

/**
 * The floor that even a deliberate exception (`--allow-weak-password`, `allow_weak_password`)
 * cannot go below: NIST SP 800-63B §5.1.1.2 requires at least 8 characters for a memorized secret.
 */
export const MIN_WEAK_PASSWORD_LENGTH = 8;

/** zxcvbn score (0-4) a new password must reach: 3 = "safely unguessable: moderate protection from offline slow-hash attacks". */
export const MIN_PASSWORD_SCORE = 3;

// English sentences for zxcvbn's feedback keys (language-common ships dictionaries, not words).
const WARNINGS: Record<string, string> = {
  straightRow: 'Straight rows of keys on your keyboard are easy to guess.',
  keyPattern: 'Short keyboard patterns are easy to guess.',
  simpleRepeat: 'Repeated characters like "aaa" are easy to guess.',
  extendedRepeat: 'Repeated character patterns like "abcabcabc" are easy to guess.',
  sequences: 'Common character sequences like "abc" are easy to guess.',
  recentYears: 'Recent years are easy to guess.',
  dates: 'Dates are easy to guess.',
  topTen: 'This is one of the most used passwords.',
  topHundred: 'This is a very frequently used password.',
  common: 'This is a commonly used password.',
  similarToCommon: 'This is similar to a commonly used password.',
  wordByItself: 'Single words are easy to guess.',
  namesByThemselves: 'Single names or surnames are easy to guess.',
  commonNames: 'Common names and surnames are easy to guess.',
  userInputs: 'It contains your name or email address.',
  pwned: 'This password appeared in a data breach.',
};

export interface PasswordContext {
  email?: string | null | undefined;
  name?: string | null | undefined;
}

/** Words from the account itself that a password must not lean on. */
function userInputs(context: PasswordContext): string[] {
  const words = new Set<string>(['latch']);
  const add = (s: string | null | undefined) => {
    if (!s) return;
    const v = s.trim().toLowerCase();
    if (v.length >= 3) words.add(v);
  };
  add(context.email);
  const [local, domain] = (context.email ?? '').split('@');
  add(local);
  for (const part of (local ?? '').split(/[^a-z0-9]+/i)) add(part);
  add(domain?.split('.')[0]);
  add(context.name);
  for (const part of (context.name ?? '').split(/\s+/)) add(part);
  return [...words];
}

/**
 * zxcvbn's work grows steeply with length (a 1024-character repetitive password costs ~150 ms of
 * CPU on the event loop): only this many first characters are estimated. A password whose first
 * 64 characters are guessable is refused; one whose first 64 are not is strong whatever follows.
 */
const ESTIMATED_LENGTH = 64;

let factory: ZxcvbnFactory | undefined;

/**
 * zxcvbn with the maintained common-password and diceware dictionaries. Building it ranks about
 * 40 000 words, so it is done once, on first use; the result is immutable.
 */
function estimator(): ZxcvbnFactory {
  factory ??= new ZxcvbnFactory({ dictionary: { ...zxcvbnCommon.dictionary }, graphs: zxcvbnCommon.adjacencyGraphs, maxLength: ESTIMATED_LENGTH });
  return factory;
}

function explain(result: ZxcvbnResult): string {
  const warning = result.feedback.warning ? WARNINGS[result.feedback.warning] : undefined;
  return `${warning ? `${warning} ` : ''}Choose a password that is harder to guess: a few unrelated words make a good one.`;
}

export interface PolicyOptions {
  /**
   * A deliberate exception chosen by an administrator (tests, a migration): the strength check
   * and the policy's minimum length are skipped, MIN_WEAK_PASSWORD_LENGTH still applies.
   */
  allowWeak?: boolean | undefined;
}

/**
 * The password policy for every new password, wherever it is chosen (registration, reset, change,
 * the CLI, the admin API): at least 10 characters, at most 1024 (hashing cost is bounded per
 * request), and not common or guessable, judged by zxcvbn with the account's own email and name
 * as known words. Returns a message for the password field, or undefined when it is acceptable.
 */
export function checkPasswordPolicy(password: string, context: PasswordContext = {}, options: PolicyOptions = {}): string | undefined {
  if (typeof password !== 'string' || password.length === 0) return 'Enter a password.';
  if (password.length > MAX_PASSWORD_LENGTH) return `Use at most ${MAX_PASSWORD_LENGTH} characters.`;
  // Length in code points, so that an emoji counts as one character, as a person counts it.
  const length = [...password].length;
  if (options.allowWeak) return length < MIN_WEAK_PASSWORD_LENGTH ? `Use at least ${MIN_WEAK_PASSWORD_LENGTH} characters, even with a weak password allowed.` : undefined;
  if (length < MIN_PASSWORD_LENGTH) return `Use at least ${MIN_PASSWORD_LENGTH} characters.`;
  const result = estimator().check(password, userInputs(context));
  if (result.score < MIN_PASSWORD_SCORE) return explain(result);
  return undefined;
}
