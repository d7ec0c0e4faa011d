/**
 * A size guard for an incoming MQTT byte stream (pure state machine, no I/O). aedes' parser
 * buffers a whole packet before looking at it, so a client announcing a 256 MB packet would
 * make the broker hold 256 MB; the guard reads each fixed header (type byte + variable-length
 * "remaining length") as bytes arrive and rejects a packet as soon as its announced size is
 * over the limit, or its length field is malformed, before the body is buffered.
 */
export type GuardVerdict = { ok: true } | { ok: false; reason: string };

export interface PacketSizeGuard {
  /** Feed the next chunk read from the connection. Once it said no, it keeps saying no. */
  push(chunk: Uint8Array): GuardVerdict;
}

export function createPacketSizeGuard(maxPacketBytes: number): PacketSizeGuard {
  // State: which header byte we are at (0 = type byte, 1..4 = length bytes), the length read so
  // far, and how many body bytes of the current packet are still to come.
  let headerPos = 0;
  let length = 0;
  let multiplier = 1;
  let bodyLeft = 0;
  let failed: GuardVerdict | null = null;

  const fail = (reason: string): GuardVerdict => (failed = { ok: false, reason });

  return {
    push(chunk) {
      if (failed) return failed;
      let i = 0;
      while (i < chunk.length) {
        if (bodyLeft > 0) {
          const take = Math.min(bodyLeft, chunk.length - i);
          bodyLeft -= take;
          i += take;
          continue;
        }
        const byte = chunk[i++]!;
        if (headerPos === 0) {
          if (byte >> 4 === 0) return fail('malformed packet: reserved packet type 0');
          headerPos = 1;
          length = 0;
          multiplier = 1;
          continue;
        }
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if (byte & 0x80) {
          if (++headerPos > 4) return fail('malformed packet: remaining length longer than 4 bytes');
          continue;
        }
        const total = 1 + headerPos + length;
        if (total > maxPacketBytes) return fail(`packet of ${total} bytes exceeds the ${maxPacketBytes}-byte limit`);
        headerPos = 0;
        bodyLeft = length;
      }
      return { ok: true };
    },
  };
}
