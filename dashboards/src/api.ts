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

export function loadSession(storage: Storage = sessionStorage): Session | null {
  try {
    const s = JSON.parse(storage.getItem(SESSION_KEY) ?? 'null') as Session | null;
    if (!s || typeof s.token !== 'string' || Date.parse(s.expiresAt) <= Date.now()) return null;
    return s;
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null, storage: Storage = sessionStorage): void {
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

/** An authenticated client; `onUnauthorized` runs when the token is no longer accepted. */
export class Api {
  constructor(
    readonly token: string,
    private readonly onUnauthorized: () => void = () => undefined,
  ) {}

  private async send(method: string, path: string, body?: unknown): Promise<Response> {
    const res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    if (res.status === 401) this.onUnauthorized();
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

  async logout(): Promise<void> {
    await this.send('POST', '/api/auth/logout').catch(() => undefined);
  }
}
