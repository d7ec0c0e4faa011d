/**
 * Message types of the robot MCU protocol, version 1 (PROTOCOL.md has the byte layouts).
 * Little-endian integers; `str` = u8 length + UTF-8 bytes (at most 255).
 */

export const MSG = {
  HELLO: 0x01,
  HEARTBEAT: 0x02,
  STATUS: 0x03,
  ACTION: 0x04,
  STEP: 0x10,
  CANCEL: 0x11,
  TRIGGER: 0x12,
  PAUSE: 0x13,
  ACK: 0x7e,
  NACK: 0x7f,
} as const;

export const ACTION_STATUSES = ['WAITING', 'INITIALIZING', 'RUNNING', 'PAUSED', 'FINISHED', 'FAILED'] as const;
export type SerialActionStatus = (typeof ACTION_STATUSES)[number];
export const ESTOPS = ['NONE', 'AUTOACK', 'MANUAL', 'REMOTE'] as const;
export type SerialEStop = (typeof ESTOPS)[number];
export const BLOCKING = ['NONE', 'SOFT', 'HARD'] as const;

export const NACK_REASONS = { unknownType: 1, malformed: 2, rejected: 3 } as const;

export interface StepAction {
  ref: number;
  type: string;
  blocking: (typeof BLOCKING)[number];
  params: Array<{ key: string; value: string }>;
}

export type Message =
  | { type: 'hello'; manufacturer: string; serialNumber: string; firmware: string; speedMmS: number; capabilities: string[] }
  | { type: 'heartbeat'; uptimeMs: number }
  | {
      type: 'status';
      orderToken: number;
      lastNodeId: string;
      lastNodeSeq: number;
      driving: boolean;
      charging: boolean;
      paused: boolean;
      fieldViolation: boolean;
      batteryPermille: number;
      eStop: SerialEStop;
      xMm: number;
      yMm: number;
      thetaMrad: number;
      errors: Array<{ fatal: boolean; errorType: string; description: string }>;
    }
  | { type: 'action'; ref: number; status: SerialActionStatus; result: string }
  | {
      type: 'step';
      orderToken: number;
      nodeSeq: number;
      nodeId: string;
      xMm: number;
      yMm: number;
      /** 0 for the first node of an order (where the robot is). */
      edgeLengthMm: number;
      maxSpeedMmS: number;
      actions: StepAction[];
    }
  | { type: 'cancel' }
  | { type: 'trigger'; ref: number }
  | { type: 'pause'; paused: boolean }
  | { type: 'ack'; seq: number }
  | { type: 'nack'; seq: number; reason: number; text: string };

export class MessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MessageError';
  }
}

class Writer {
  private readonly parts: Buffer[] = [];
  u8(v: number) {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u16(v: number) {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    this.parts.push(b);
    return this;
  }
  i16(v: number) {
    const b = Buffer.alloc(2);
    b.writeInt16LE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
    return this;
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.parts.push(b);
    return this;
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw new MessageError(`string of ${b.length} bytes exceeds 255: ${s.slice(0, 30)}...`);
    this.u8(b.length);
    this.parts.push(b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

class Reader {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number, what: string) {
    if (this.at + n > this.b.length) throw new MessageError(`payload ends inside ${what} at byte ${this.at}`);
  }
  u8(what: string) {
    this.need(1, what);
    return this.b.readUInt8(this.at++);
  }
  u16(what: string) {
    this.need(2, what);
    const v = this.b.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  i16(what: string) {
    this.need(2, what);
    const v = this.b.readInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32(what: string) {
    this.need(4, what);
    const v = this.b.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  i32(what: string) {
    this.need(4, what);
    const v = this.b.readInt32LE(this.at);
    this.at += 4;
    return v;
  }
  str(what: string) {
    const n = this.u8(what);
    this.need(n, what);
    const s = this.b.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }
  end(type: string) {
    if (this.at !== this.b.length) throw new MessageError(`${type}: ${this.b.length - this.at} unexpected bytes after the payload`);
  }
}

const enumIndex = <T extends readonly string[]>(list: T, value: T[number]) => list.indexOf(value);
const enumValue = <T extends readonly string[]>(list: T, index: number, what: string): T[number] => {
  const v = list[index];
  if (v === undefined) throw new MessageError(`${what}: unknown value ${index}`);
  return v;
};

export function encodeMessage(m: Message): { type: number; payload: Buffer } {
  const w = new Writer();
  switch (m.type) {
    case 'hello':
      w.str(m.manufacturer).str(m.serialNumber).str(m.firmware).u16(m.speedMmS).u8(m.capabilities.length);
      m.capabilities.forEach((c) => w.str(c));
      return { type: MSG.HELLO, payload: w.done() };
    case 'heartbeat':
      return { type: MSG.HEARTBEAT, payload: w.u32(m.uptimeMs >>> 0).done() };
    case 'status': {
      const flags = (m.driving ? 1 : 0) | (m.charging ? 2 : 0) | (m.paused ? 4 : 0) | (m.fieldViolation ? 8 : 0);
      w.u16(m.orderToken).str(m.lastNodeId).u32(m.lastNodeSeq).u8(flags).u16(m.batteryPermille).u8(enumIndex(ESTOPS, m.eStop));
      w.i32(Math.round(m.xMm)).i32(Math.round(m.yMm)).i16(Math.round(m.thetaMrad)).u8(m.errors.length);
      m.errors.forEach((e) => w.u8(e.fatal ? 1 : 0).str(e.errorType).str(e.description));
      return { type: MSG.STATUS, payload: w.done() };
    }
    case 'action':
      return { type: MSG.ACTION, payload: w.u16(m.ref).u8(enumIndex(ACTION_STATUSES, m.status)).str(m.result).done() };
    case 'step':
      w.u16(m.orderToken).u32(m.nodeSeq).str(m.nodeId).i32(Math.round(m.xMm)).i32(Math.round(m.yMm)).u32(Math.round(m.edgeLengthMm)).u16(m.maxSpeedMmS);
      w.u8(m.actions.length);
      for (const a of m.actions) {
        w.u16(a.ref).str(a.type).u8(enumIndex(BLOCKING, a.blocking)).u8(a.params.length);
        a.params.forEach((p) => w.str(p.key).str(p.value));
      }
      return { type: MSG.STEP, payload: w.done() };
    case 'cancel':
      return { type: MSG.CANCEL, payload: w.done() };
    case 'trigger':
      return { type: MSG.TRIGGER, payload: w.u16(m.ref).done() };
    case 'pause':
      return { type: MSG.PAUSE, payload: w.u8(m.paused ? 1 : 0).done() };
    case 'ack':
      return { type: MSG.ACK, payload: w.u8(m.seq).done() };
    case 'nack':
      return { type: MSG.NACK, payload: w.u8(m.seq).u8(m.reason).str(m.text).done() };
  }
}

/** Throws MessageError naming the type and field that did not fit. */
export function decodeMessage(type: number, payload: Buffer): Message {
  const r = new Reader(payload);
  let m: Message;
  switch (type) {
    case MSG.HELLO: {
      const manufacturer = r.str('hello.manufacturer');
      const serialNumber = r.str('hello.serialNumber');
      const firmware = r.str('hello.firmware');
      const speedMmS = r.u16('hello.speed');
      const n = r.u8('hello.capabilities');
      const capabilities = Array.from({ length: n }, () => r.str('hello.capability'));
      m = { type: 'hello', manufacturer, serialNumber, firmware, speedMmS, capabilities };
      break;
    }
    case MSG.HEARTBEAT:
      m = { type: 'heartbeat', uptimeMs: r.u32('heartbeat.uptime') };
      break;
    case MSG.STATUS: {
      const orderToken = r.u16('status.orderToken');
      const lastNodeId = r.str('status.lastNodeId');
      const lastNodeSeq = r.u32('status.lastNodeSeq');
      const flags = r.u8('status.flags');
      const batteryPermille = r.u16('status.battery');
      if (batteryPermille > 1000) throw new MessageError(`status.battery: ${batteryPermille} ‰ is above 1000`);
      const eStop = enumValue(ESTOPS, r.u8('status.eStop'), 'status.eStop');
      const xMm = r.i32('status.x');
      const yMm = r.i32('status.y');
      const thetaMrad = r.i16('status.theta');
      const n = r.u8('status.errors');
      const errors = Array.from({ length: n }, () => ({ fatal: r.u8('status.error.level') === 1, errorType: r.str('status.error.type'), description: r.str('status.error.description') }));
      m = {
        type: 'status',
        orderToken,
        lastNodeId,
        lastNodeSeq,
        driving: (flags & 1) !== 0,
        charging: (flags & 2) !== 0,
        paused: (flags & 4) !== 0,
        fieldViolation: (flags & 8) !== 0,
        batteryPermille,
        eStop,
        xMm,
        yMm,
        thetaMrad,
        errors,
      };
      break;
    }
    case MSG.ACTION:
      m = { type: 'action', ref: r.u16('action.ref'), status: enumValue(ACTION_STATUSES, r.u8('action.status'), 'action.status'), result: r.str('action.result') };
      break;
    case MSG.STEP: {
      const orderToken = r.u16('step.orderToken');
      const nodeSeq = r.u32('step.nodeSeq');
      const nodeId = r.str('step.nodeId');
      const xMm = r.i32('step.x');
      const yMm = r.i32('step.y');
      const edgeLengthMm = r.u32('step.edgeLength');
      const maxSpeedMmS = r.u16('step.maxSpeed');
      const n = r.u8('step.actions');
      const actions: StepAction[] = Array.from({ length: n }, () => {
        const ref = r.u16('step.action.ref');
        const actionType = r.str('step.action.type');
        const blocking = enumValue(BLOCKING, r.u8('step.action.blocking'), 'step.action.blocking');
        const pn = r.u8('step.action.params');
        const params = Array.from({ length: pn }, () => ({ key: r.str('step.action.param.key'), value: r.str('step.action.param.value') }));
        return { ref, type: actionType, blocking, params };
      });
      m = { type: 'step', orderToken, nodeSeq, nodeId, xMm, yMm, edgeLengthMm, maxSpeedMmS, actions };
      break;
    }
    case MSG.CANCEL:
      m = { type: 'cancel' };
      break;
    case MSG.TRIGGER:
      m = { type: 'trigger', ref: r.u16('trigger.ref') };
      break;
    case MSG.PAUSE:
      m = { type: 'pause', paused: r.u8('pause.paused') === 1 };
      break;
    case MSG.ACK:
      m = { type: 'ack', seq: r.u8('ack.seq') };
      break;
    case MSG.NACK:
      m = { type: 'nack', seq: r.u8('nack.seq'), reason: r.u8('nack.reason'), text: r.str('nack.text') };
      break;
    default:
      throw new MessageError(`unknown message type 0x${type.toString(16).padStart(2, '0')}`);
  }
  r.end(m.type);
  return m;
}

/** Types the sender wants acknowledged (and retransmits until they are). */
export const RELIABLE: ReadonlySet<Message['type']> = new Set(['hello', 'action', 'step', 'cancel', 'trigger', 'pause']);
