/**
 * systemd readiness and watchdog for the Checkpoint services, loaded with `node --import` by the
 * /usr/bin wrappers. It does nothing unless systemd started the process with a NOTIFY_SOCKET.
 * Every third of WatchdogSec it asks the program's own health: CHECKPOINT_HEALTH_URL (HTTP 200
 * from /healthz) or CHECKPOINT_HEALTH_TCP (host:port accepts a connection). Only a good answer
 * sends READY=1 (the first time) and WATCHDOG=1, so a hung event loop or a failing health check
 * makes systemd restart the service (Restart=on-failure). Node cannot write to a Unix datagram
 * socket, so the message goes through systemd-notify (hence NotifyAccess=all in the units).
 */
import { execFile } from 'node:child_process';
import net from 'node:net';

/* global fetch, AbortSignal -- Node 20 globals */

const socket = process.env.NOTIFY_SOCKET;
if (socket) {
  const intervalMs = Math.max(1000, Math.floor(Number(process.env.WATCHDOG_USEC ?? 30_000_000) / 3000));
  const url = process.env.CHECKPOINT_HEALTH_URL;
  const tcp = process.env.CHECKPOINT_HEALTH_TCP;
  let ready = false;

  const healthy = async () => {
    if (url) {
      const res = await fetch(url, { signal: AbortSignal.timeout(intervalMs) });
      await res.arrayBuffer();
      return res.ok;
    }
    if (tcp) {
      const [host, port] = [tcp.slice(0, tcp.lastIndexOf(':')), Number(tcp.slice(tcp.lastIndexOf(':') + 1))];
      return new Promise((resolve) => {
        const s = net.connect({ host, port });
        s.setTimeout(intervalMs, () => (s.destroy(), resolve(false)));
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
    }
    return true; // no health check configured: the event loop running is the sign of life
  };

  const notify = (...state) =>
    new Promise((resolve) => execFile('systemd-notify', [`--pid=${process.pid}`, ...state], { timeout: 5000 }, () => resolve()));

  const tick = async () => {
    try {
      if (await healthy()) {
        await notify(...(ready ? [] : ['--ready']), 'WATCHDOG=1');
        ready = true;
      }
    } catch {
      // not up yet, or unhealthy: no ping, and systemd decides
    }
  };
  setInterval(() => void tick(), intervalMs).unref();
  setTimeout(() => void tick(), 500).unref();
}
