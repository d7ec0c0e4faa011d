import { expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '@checkpoint/protocol';
it('resolves workspace sources', () => { expect(PROTOCOL_VERSION).toBe('v1'); });
