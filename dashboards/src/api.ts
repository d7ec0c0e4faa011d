/**
 * The gateway's REST API as the pages use it: a bearer token from POST /api/auth/login, JSON in
 * and out, and errors that keep the HTTP status (401 = log in again, 403 = not your role,
 * 404 = not there, e.g. the fleet API on a gateway without robots).
 */
export type Role = 'guard' | 'dispatcher' | 'engineer' | 'admin';
export const ROLES: readonly Role[] = ['guard', 'dispatcher', 'engineer', 'admin'];

/** Roles are ordered like the gateway's: a higher role may do what a lower one may. */
export function roleAtLeast(role: Role, least: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(least);
}

export interface Session {
  token: string;
  user: string;
  role: Role;
  expiresAt: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const SESSION_KEY = 'checkpoint.session';

/**
 * The session lives in localStorage, so every tab of this browser shares one login (and a renewal
 * or logout in one tab reaches the others through the `storage` event). It holds only the bearer
 * token, which expires on the gateway anyway.
 */
export function loadSession(storage: Storage = localStorage): Session | null {
  try {
    const s = JSON.parse(storage.getItem(SESSION_KEY) ?? 'null') as Session | null;
    if (!s || typeof s.token !== 'string' || Date.parse(s.expiresAt) <= Date.now()) return null;
    return s;
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null, storage: Storage = localStorage): void {
  if (session) storage.setItem(SESSION_KEY, JSON.stringify(session));
  else storage.removeItem(SESSION_KEY);
}

async function errorOf(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { message?: string };
    if (body.message) message = body.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, message);
}

export async function login(username: string, password: string): Promise<Session> {
  const res = await fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw await errorOf(res);
  const body = (await res.json()) as Session;
  return { token: body.token, user: body.user, role: body.role, expiresAt: body.expiresAt };
}

/** Other tabs' logins, renewals and logouts (the `storage` event); returns an unsubscribe function. */
export function onSessionChange(listener: (s: Session | null) => void): () => void {
  const handler = (e: StorageEvent) => {
    if (e.key === SESSION_KEY || e.key === null) listener(loadSession());
  };
  addEventListener('storage', handler);
  return () => removeEventListener('storage', handler);
}

/**
 * When to renew a session (pure): 30 min before it ends, or halfway through what is left when
 * that is under an hour (short test tokens); now when it has already ended.
 */
export function renewAtMs(expiresAt: string, nowMs: number): number {
  const end = Date.parse(expiresAt);
  const left = end - nowMs;
  if (left <= 0) return nowMs;
  return left <= 60 * 60_000 ? nowMs + left / 2 : end - 30 * 60_000;
}

/** An authenticated client; `onUnauthorized` runs when the token is no longer accepted. */
export class Api {
  /** `token` is read on every request: a renewed session (this tab or another) takes effect at once. */
  constructor(
    private readonly token: () => string,
    /** Called with the token the gateway refused (a request may have left before a renewal). */
    private readonly onUnauthorized: (token: string) => void = () => undefined,
  ) {}

  private async send(method: string, path: string, body?: unknown): Promise<Response> {
    const token = this.token();
    // Bytes go as they are (a model file); anything else as JSON.
    const bytes = body instanceof Uint8Array;
    const res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': bytes ? 'application/octet-stream' : 'application/json' } : {}) },
      ...(body !== undefined ? { body: bytes ? (body as Uint8Array<ArrayBuffer>) : JSON.stringify(body) } : {}),
    });
    if (res.status === 401) this.onUnauthorized(token);
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  async get<T>(path: string): Promise<T> {
    return (await (await this.send('GET', path)).json()) as T;
  }

  async post<T>(path: string, body?: unknown): Promise<T> {
    const res = await this.send('POST', path, body);
    return (res.status === 204 ? undefined : await res.json()) as T;
  }

  /** An image as a blob: URL (the caller revokes it). Snapshots need the bearer token, so <img src> cannot fetch them. */
  async blobUrl(path: string): Promise<string> {
    return URL.createObjectURL(await (await this.send('GET', path)).blob());
  }

  /** A fresh token for the same user (POST /api/auth/renew); the current one ends. */
  async renew(): Promise<Session> {
    const body = await this.post<Session>('/api/auth/renew');
    return { token: body.token, user: body.user, role: body.role, expiresAt: body.expiresAt };
  }

  async logout(): Promise<void> {
    await this.send('POST', '/api/auth/logout').catch(() => undefined);
  }
}
