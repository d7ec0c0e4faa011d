import type { Screening } from '@checkpoint/protocol';

export function validScreening(overrides: Partial<Screening> = {}): Screening {
  return {
    id: '01JD3Q8Z5W6X7Y8Z9A0B1C2D3E',
    ts: '2026-11-22T08:15:30.123Z',
    site: 'hospital-a',
    checkpoint: 'gate-2',
    trackId: 17,
    temperatureC: 37.6,
    method: 'canthus',
    blackbody: { setC: 35, measuredC: 34.2, offsetC: 0.8 },
    ambientC: 22.5,
    mask: 'mask',
    maskScore: 0.97,
    faceScore: 0.99,
    decision: 'secondary_check',
    reasons: ['elevated_temperature'],
    thresholdC: 37.3,
    mode: 'absolute',
    frames: 9,
    latencyMs: 840,
    model: { name: 'masked-face-640', sha256: '27ca3e5985f722e91efea7993f625716de627303c4bafb40bb26f456286beca8' },
    snapshot: true,
    ...overrides,
  };
}
