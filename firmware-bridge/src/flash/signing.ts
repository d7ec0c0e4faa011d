/**
 * Signed firmware images. The image stays the raw `.bin` the toolchain produced; next to it sits a
 * signature file (`app.bin.sig.json`) holding a small manifest and an ed25519 signature over it:
 *
 *   {"manifest": {"format": "checkpoint-firmware/1", "chipId": "0x468", "address": "0x08000000",
 *                 "version": "1.4.0", "size": 10240, "sha256": "…"},
 *    "signature": "<base64 ed25519 signature>"}
 *
 * The signature covers the manifest (in a fixed field order), and the manifest pins the image by
 * its sha256 and size, so the image, its target chip and its load address are all signed. The
 * check runs before the flasher touches the board (flash.ts).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

export const MANIFEST_FORMAT = 'checkpoint-firmware/1';

export interface FirmwareManifest {
  /** STM32 product ID that Get ID must return, e.g. 0x468. */
  chipId: number;
  /** Load address in flash, e.g. 0x08000000. */
  address: number;
  version: string;
  /** Image length in bytes. */
  size: number;
  /** Lower-case hex sha256 of the image. */
  sha256: string;
}

export interface SignatureFile {
  manifest: FirmwareManifest;
  /** base64 ed25519 signature over `signedBytes(manifest)`. */
  signature: string;
}

export class SignatureError extends Error {
  override name = 'SignatureError';
}

type KeyInput = KeyObject | string | Buffer;

const hexWord = (n: number) => `0x${n.toString(16).padStart(n > 0xffff ? 8 : 3, '0')}`;

/** The exact bytes that are signed: a format line, then the manifest as JSON in a fixed key order. */
export function signedBytes(m: FirmwareManifest): Buffer {
  const canonical = { format: MANIFEST_FORMAT, chipId: hexWord(m.chipId), address: hexWord(m.address), version: m.version, size: m.size, sha256: m.sha256 };
  return Buffer.from(`${MANIFEST_FORMAT}\n${JSON.stringify(canonical)}`, 'utf8');
}

export const sha256Hex = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** A new ed25519 key pair as PEM (private key PKCS#8, public key SPKI). Keep the private key offline. */
export function generateSigningKeys(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Signs an image for a target: computes size and sha256, returns the signature file contents. */
export function signImage(image: Uint8Array, target: { chipId: number; address: number; version: string }, privateKey: KeyInput): SignatureFile {
  const key = toKey(privateKey, 'private');
  if (key.asymmetricKeyType !== 'ed25519') throw new SignatureError(`signing key is ${key.asymmetricKeyType}, expected ed25519`);
  const manifest: FirmwareManifest = { chipId: target.chipId, address: target.address, version: target.version, size: image.length, sha256: sha256Hex(image) };
  checkManifest(manifest, 'manifest');
  return { manifest, signature: sign(null, signedBytes(manifest), key).toString('base64') };
}

/**
 * Checks the signature over the manifest and that the manifest describes this image. Throws a
 * SignatureError saying which check failed; returns the manifest when everything holds.
 */
export function verifySignedImage(image: Uint8Array, sig: SignatureFile, publicKey: KeyInput): FirmwareManifest {
  const key = toKey(publicKey, 'public');
  if (key.asymmetricKeyType !== 'ed25519') throw new SignatureError(`public key is ${key.asymmetricKeyType}, expected ed25519`);
  const signature = Buffer.from(sig.signature, 'base64');
  if (signature.length !== 64 || !verify(null, signedBytes(sig.manifest), key, signature)) {
    throw new SignatureError('image signature is not valid for this public key: refusing to flash (nothing was erased)');
  }
  if (image.length !== sig.manifest.size) throw new SignatureError(`image is ${image.length} bytes but its signed manifest says ${sig.manifest.size}: refusing to flash`);
  const actual = sha256Hex(image);
  if (actual !== sig.manifest.sha256) throw new SignatureError(`image sha256 ${actual} does not match the signed manifest (${sig.manifest.sha256}): refusing to flash`);
  return sig.manifest;
}

/** Signature file as written to disk (chip ID and address in hex, as engineers read them). */
export function formatSignatureFile(sig: SignatureFile): string {
  const m = sig.manifest;
  const manifest = { format: MANIFEST_FORMAT, chipId: hexWord(m.chipId), address: hexWord(m.address), version: m.version, size: m.size, sha256: m.sha256 };
  return `${JSON.stringify({ manifest, signature: sig.signature }, null, 2)}\n`;
}

/** Parses a signature file, naming the field that is wrong. */
export function parseSignatureFile(text: string, where: string): SignatureFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SignatureError(`${where}: not JSON (${(err as Error).message})`);
  }
  const o = raw as { manifest?: Record<string, unknown>; signature?: unknown };
  if (typeof o !== 'object' || o === null || typeof o.manifest !== 'object' || o.manifest === null) throw new SignatureError(`${where}: missing "manifest" object`);
  if (typeof o.signature !== 'string') throw new SignatureError(`${where}: missing "signature" (base64 string)`);
  const m = o.manifest;
  if (m.format !== MANIFEST_FORMAT) throw new SignatureError(`${where}: manifest.format must be "${MANIFEST_FORMAT}", got ${JSON.stringify(m.format)}`);
  const num = (field: string): number => {
    const v = m[field];
    const n = typeof v === 'string' && /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : typeof v === 'number' ? v : NaN;
    if (!Number.isInteger(n) || n < 0) throw new SignatureError(`${where}: manifest.${field} must be a non-negative integer (hex "0x…" allowed), got ${JSON.stringify(v)}`);
    return n;
  };
  const manifest: FirmwareManifest = {
    chipId: num('chipId'),
    address: num('address'),
    version: String(m.version ?? ''),
    size: num('size'),
    sha256: String(m.sha256 ?? ''),
  };
  checkManifest(manifest, `${where}: manifest`);
  return { manifest, signature: o.signature };
}

function checkManifest(m: FirmwareManifest, where: string): void {
  if (!/^[0-9a-f]{64}$/.test(m.sha256)) throw new SignatureError(`${where}.sha256 must be 64 lower-case hex digits`);
  if (!m.version || m.version.length > 64) throw new SignatureError(`${where}.version must be 1..64 characters`);
  if (m.chipId > 0xfff) throw new SignatureError(`${where}.chipId 0x${m.chipId.toString(16)} is not a 12-bit STM32 product ID`);
  if (m.address > 0xffffffff) throw new SignatureError(`${where}.address is not a 32-bit address`);
}

function toKey(key: KeyInput, kind: 'private' | 'public'): KeyObject {
  if (typeof key !== 'string' && !Buffer.isBuffer(key)) return key;
  try {
    return kind === 'private' ? createPrivateKey(key) : createPublicKey(key);
  } catch (err) {
    throw new SignatureError(`cannot read the ${kind} key (PEM expected): ${(err as Error).message}`);
  }
}
