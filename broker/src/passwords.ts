/**
 * Password hashing. Our broker verifies scrypt hashes (memory-hard, node:crypto). Mosquitto only
 * reads PBKDF2-SHA512 (`$7$` lines of its password file), so the store can also keep that form
 * of each password for `mosquitto-export`, and NATS reads bcrypt, kept (when configured) for
 * `nats-export`; see README "Mosquitto" and "NATS cluster" for the trade-off.
 */
import bcrypt from 'bcryptjs';
import { pbkdf2, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** ~16 MiB of memory and a few tens of ms per hash on a small box (OWASP's scrypt minimum is N=2^17 with r=8 at p=1; we trade for Pi-class CPUs). */
export const DEFAULT_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1 };
const KEY_LEN = 32;
const SALT_LEN = 16;

function scryptAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 128 * params.N * params.r * 2 };
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_LEN, options, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

/** `scrypt$N$r$p$<salt b64>$<key b64>`: self-describing, so parameters can be raised later. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const key = await scryptAsync(password, salt, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64'), key.toString('base64')].join('$');
}

function parseScryptHash(hash: string): { params: ScryptParams; salt: Buffer; key: Buffer } | null {
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0)) return null;
  return { params: { N, r, p }, salt: Buffer.from(parts[4]!, 'base64'), key: Buffer.from(parts[5]!, 'base64') };
}

/** A hash of a random secret, compared against when the user does not exist, so that unknown and known names cost the same time. */
const dummyHashes = new Map<string, Promise<string>>();
export function dummyPasswordHash(params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const key = `${params.N}/${params.r}/${params.p}`;
  let hash = dummyHashes.get(key);
  if (!hash) dummyHashes.set(key, (hash = hashPassword(randomBytes(16).toString('hex'), params)));
  return hash;
}

/** Constant-time check of `password` against a stored scrypt hash; false for malformed hashes. */
export async function verifyPassword(password: string, storedHash: string): Promise<boolean> {
  const parsed = parseScryptHash(storedHash);
  if (!parsed) return false;
  const key = await scryptAsync(password, parsed.salt, parsed.params);
  return key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
}

/** Mosquitto 2.x `$7$` format: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key, base64. */
export async function mosquittoPasswordHash(password: string, iterations: number): Promise<string> {
  if (!Number.isInteger(iterations) || iterations < 1) throw new Error(`mosquitto hash iterations must be a positive integer, got ${iterations}`);
  const salt = randomBytes(12);
  const key = await new Promise<Buffer>((resolve, reject) =>
    pbkdf2(password, salt, iterations, 64, 'sha512', (error, k) => (error ? reject(error) : resolve(k))),
  );
  return `$7$${iterations}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** bcrypt reads at most 72 bytes of a password; longer ones would be silently cut. */
export const BCRYPT_MAX_PASSWORD_BYTES = 72;

/**
 * bcrypt (`$2b$<cost>$...`, which nats-server accepts as a password in its config), or null for a
 * password longer than bcrypt reads: such a user is left out of nats-export rather than being let
 * in by a prefix of its password.
 */
export async function natsPasswordHash(password: string, cost: number): Promise<string | null> {
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) throw new Error(`bcrypt cost must be an integer from 4 to 31, got ${cost}`);
  if (Buffer.byteLength(password, 'utf8') > BCRYPT_MAX_PASSWORD_BYTES) return null;
  return bcrypt.hash(password, cost);
}

/** A password for `user add` without one: 24 random bytes, URL-safe base64 (32 characters). */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}
