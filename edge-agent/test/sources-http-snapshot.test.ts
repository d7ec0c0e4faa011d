import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHttpSnapshot, readImageSize } from '../src/sources/http-snapshot.js';
import type { VisibleFrame } from '../src/frames.js';
import type { VisibleSource } from '../src/sources/mjpeg.js';

let server: Server;
let base = '';
let jpegs: Buffer[] = [];
let png: Buffer;
let snapCount = 0;
let flakyCount = 0;

beforeAll(async () => {
  jpegs = await Promise.all(
    [0, 1, 2].map((i) => sharp({ create: { width: 64 + i, height: 48, channels: 3, background: { r: 40 * i, g: 90, b: 200 } } }).jpeg().toBuffer()),
  );
  png = await sharp({ create: { width: 21, height: 13, channels: 4, background: '#ff000080' } }).png().toBuffer();
  server = createServer((req, res) => {
    switch (req.url) {
      case '/snap.jpg': {
        const body = jpegs[snapCount++ % jpegs.length]!;
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
        return;
      }
      case '/snap.png':
        res.writeHead(200, { 'content-type': 'image/png' }).end(png);
        return;
      case '/login':
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Please log in</body></html>');
        return;
      case '/flaky':
        // Fails every other request, starting with the first.
        if (flakyCount++ % 2 === 0) res.writeHead(503).end();
        else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpegs[0]);
        return;
      case '/private.jpg':
        if (req.headers.authorization === `Basic ${Buffer.from('admin:s3cret!').toString('base64')}`) res.writeHead(200).end(jpegs[2]);
        else res.writeHead(401, 'Unauthorized').end();
        return;
      case '/hang':
        return; // never answers
      default:
        res.writeHead(404).end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function take(src: VisibleSource, n: number): Promise<VisibleFrame[]> {
  const out: VisibleFrame[] = [];
  for await (const f of src.frames()) {
    out.push(f);
    if (out.length === n) break;
  }
  return out;
}

describe('image headers (pure)', () => {
  it('reads JPEG and PNG sizes and names anything else', () => {
    expect(readImageSize(jpegs[1]!)).toEqual({ width: 65, height: 48, type: 'jpeg' });
    expect(readImageSize(png)).toEqual({ width: 21, height: 13, type: 'png' });
    expect(() => readImageSize(Buffer.from('<html>hello'))).toThrow('not a JPEG or PNG (11 bytes starting "<html>hello")');
  });
});

describe('HTTP snapshot polling against a real server', () => {
  it('polls the URL and yields each image with its size', async () => {
    snapCount = 0;
    const src = openHttpSnapshot({ url: `${base}/snap.jpg`, intervalMs: 10 });
    const frames = await take(src, 4);
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3, 4]);
    frames.forEach((f, i) => {
      expect(f.encoded.equals(jpegs[i % 3]!)).toBe(true);
      expect([f.width, f.height]).toEqual([64 + (i % 3), 48]);
    });
    await src.close();
  });

  it('accepts PNG snapshots', async () => {
    const [f] = await take(openHttpSnapshot({ url: `${base}/snap.png` }), 1);
    expect([f!.width, f!.height]).toEqual([21, 13]);
  });

  it('rejects a page that is not an image, naming the content type', async () => {
    await expect(take(openHttpSnapshot({ url: `${base}/login` }), 1)).rejects.toThrow(
      `snapshot URL ${base}/login returned text/html, not an image: not a JPEG or PNG`,
    );
  });

  it('reports HTTP errors with the status', async () => {
    await expect(take(openHttpSnapshot({ url: `${base}/missing.jpg` }), 1)).rejects.toThrow(`snapshot URL ${base}/missing.jpg answered HTTP 404`);
  });

  it('reports an unreachable camera', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(take(openHttpSnapshot({ url: `http://127.0.0.1:${port}/snap.jpg` }), 1)).rejects.toThrow(
      `snapshot URL http://127.0.0.1:${port}/snap.jpg unreachable: ECONNREFUSED`,
    );
  });

  it('times out a camera that never answers', async () => {
    await expect(take(openHttpSnapshot({ url: `${base}/hang`, timeoutMs: 200 }), 1)).rejects.toThrow(`snapshot URL ${base}/hang unreachable: no response in 200 ms`);
  });

  it('tolerates isolated failures when allowed, and counts them', async () => {
    flakyCount = 0;
    const src = openHttpSnapshot({ url: `${base}/flaky`, intervalMs: 5, maxConsecutiveFailures: 1 });
    const frames = await take(src, 3);
    expect(frames).toHaveLength(3);
    expect(src.stats()).toEqual({ frames: 3, failures: 3 });
  });

  it('sends credentials from the URL as Basic auth and keeps them out of errors', async () => {
    const port = new URL(base).port;
    const [f] = await take(openHttpSnapshot({ url: `http://admin:s3cret%21@127.0.0.1:${port}/private.jpg` }), 1);
    expect(f!.encoded.equals(jpegs[2]!)).toBe(true);
    const err = await take(openHttpSnapshot({ url: `http://admin:wrong@127.0.0.1:${port}/private.jpg` }), 1).catch((e: Error) => e);
    expect(String(err)).toMatch(/answered HTTP 401 Unauthorized/);
    expect(String(err)).not.toMatch(/wrong|admin/);
  });

  it('rejects a malformed URL up front', () => {
    expect(() => openHttpSnapshot({ url: 'cam-1/snapshot' })).toThrow('snapshot URL is not a valid URL: "cam-1/snapshot"');
    expect(() => openHttpSnapshot({ url: 'rtsp://cam/stream' })).toThrow('snapshot URL must be http(s), got rtsp:');
  });
});
