/**
 * Enrollment tokens and device identities (pure). A token is 32 random bytes shown once to the
 * engineer; only its SHA-256 is stored, so a copy of the database enrolls nobody. A token is
 * single use, short-lived, and superseded by the next token issued for the same checkpoint.
 */
import { createHash, randomBytes } from 'node:crypto';

export interface DeviceRef {
  site: string;
  checkpoint: string;
}

export const deviceKey = (d: DeviceRef): string => `${d.site}/${d.checkpoint}`;

/** `cpe_` + 43 base64url characters: recognisable in a terminal, 256 bits of entropy. */
export function newEnrollmentToken(): { token: string; hash: string } {
  const token = `cpe_${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashToken(token) };
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A device's broker password: 24 random bytes (32 characters, no line breaks). */
export function newDevicePassword(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The broker user of a checkpoint: `site.checkpoint` (ids never contain dots, so names cannot
 * collide), shortened with a hash when that passes the broker's 64-character limit.
 */
export function brokerUserName(d: DeviceRef): string {
  const plain = `${d.site}.${d.checkpoint}`;
  if (plain.length <= 64) return plain;
  const digest = createHash('sha256').update(deviceKey(d)).digest('hex').slice(0, 12);
  return `${d.site.slice(0, 25)}.${d.checkpoint.slice(0, 25)}.${digest}`;
}

export interface TokenRow extends DeviceRef {
  createdMs: number;
  expiresMs: number;
  usedMs: number | null;
  invalidatedMs: number | null;
}

export type TokenRefusal = 'unknown' | 'used' | 'expired' | 'superseded';

export type TokenJudgement = { ok: true } | { ok: false; reason: TokenRefusal; message: string };

const iso = (ms: number) => new Date(ms).toISOString();

/** Whether a presented token may enroll now, and if not, a message an engineer can act on. */
export function judgeToken(row: TokenRow | null, nowMs: number): TokenJudgement {
  if (!row) {
    return { ok: false, reason: 'unknown', message: 'unknown enrollment token: check for typos, or ask an engineer for a new one (POST /api/checkpoints or `checkpoint-gateway device add`)' };
  }
  const where = deviceKey(row);
  if (row.usedMs !== null) {
    return { ok: false, reason: 'used', message: `enrollment token for ${where} was already used at ${iso(row.usedMs)}; tokens work once — ask an engineer for a new one` };
  }
  if (row.invalidatedMs !== null) {
    return { ok: false, reason: 'superseded', message: `enrollment token for ${where} was withdrawn at ${iso(row.invalidatedMs)} (a newer token was issued or the device was revoked); ask an engineer for a new one` };
  }
  if (row.expiresMs <= nowMs) {
    return { ok: false, reason: 'expired', message: `enrollment token for ${where} expired at ${iso(row.expiresMs)}; ask an engineer for a new one` };
  }
  return { ok: true };
}
