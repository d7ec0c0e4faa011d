/**
 * Payload schemas of the MQTT contract (DESIGN.md). TypeBox schemas are the single source of
 * truth: the TS types are derived from them and `validators.ts` compiles each one once.
 *
 * Every object is closed (`additionalProperties: false`) and every string bounded, so a
 * payload that validates is safe to store and display.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN, ULID_PATTERN } from './topics.js';

const closed = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const Id = Type.String({ pattern: ID_PATTERN, maxLength: 64, description: 'site/checkpoint id' });
export const Ulid = Type.String({ pattern: ULID_PATTERN, maxLength: 26, description: 'ULID' });
/**
 * RFC 3339 UTC timestamp with milliseconds, as produced by `Date.prototype.toISOString`; the
 * format makes the validators refuse what matches the pattern but names no instant (month 13).
 */
export const Timestamp = Type.String({
  format: 'date-time',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,6})?Z$',
  maxLength: 32,
  description: 'UTC timestamp, ISO 8601',
});
export const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$', maxLength: 64 });
const ShortText = (maxLength = 128) => Type.String({ minLength: 1, maxLength });
/** A skin/ambient/reference temperature; anything outside is a sensor fault, not a reading. */
const Celsius = Type.Number({ minimum: -60, maximum: 150 });
const Ratio = Type.Number({ minimum: 0, maximum: 1 });
const Millis = Type.Number({ minimum: 0, maximum: 3_600_000 });

export const ModelRef = Type.Object(
  { name: ShortText(64), sha256: Sha256 },
  { ...closed, description: 'the model that made a decision' },
);

export const BlackbodyReading = Type.Object(
  {
    setC: Celsius,
    measuredC: Celsius,
    /** set point - measured (smoothed); added to every face temperature. */
    offsetC: Type.Number({ minimum: -20, maximum: 20 }),
  },
  closed,
);

/**
 * `cannot_screen`: a person was seen but could not be measured (face too small, no thermal face
 * under it, left before a reading); exactly one per person, the cause in `reasons`. A guard must
 * look at that person, like a `secondary_check`.
 */
export const Decision = Type.Union([
  Type.Literal('pass'),
  Type.Literal('secondary_check'),
  Type.Literal('invalid'),
  Type.Literal('cannot_screen'),
]);
/** Which camera found the face: the visible model, the thermal warm-face finder, or both. */
export const DetectedBy = Type.Union([Type.Literal('visible'), Type.Literal('thermal'), Type.Literal('both')]);
export const MaskState = Type.Union([Type.Literal('mask'), Type.Literal('no_mask'), Type.Literal('unknown')]);
export const ScreeningMode = Type.Union([Type.Literal('absolute'), Type.Literal('relative')]);
export const MeasurementMethod = Type.Union([Type.Literal('canthus'), Type.Literal('face-max')]);

/** Why a decision is not a plain pass. Stable strings: dashboards translate them. */
export const REASONS = [
  'elevated_temperature',
  'no_mask',
  'multiple_faces',
  'face_too_small',
  'no_reference',
  'unstable_reference',
  'too_cold_retry',
  'too_hot_ambient',
  'no_thermal_face',
  'too_few_frames',
] as const;
export const Reason = Type.Union(REASONS.map((r) => Type.Literal(r)));

export const Screening = Type.Object(
  {
    id: Ulid,
    ts: Timestamp,
    site: Id,
    checkpoint: Id,
    trackId: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    /** Corrected skin temperature; null when no trustworthy number exists. */
    temperatureC: Nullable(Celsius),
    method: Nullable(MeasurementMethod),
    blackbody: Nullable(BlackbodyReading),
    ambientC: Nullable(Celsius),
    mask: MaskState,
    maskScore: Nullable(Ratio),
    faceScore: Ratio,
    decision: Decision,
    reasons: Type.Array(Reason, { maxItems: REASONS.length, uniqueItems: true }),
    thresholdC: Type.Number({ minimum: 30, maximum: 45 }),
    mode: ScreeningMode,
    /** Number of frames the decision was made from. */
    frames: Type.Integer({ minimum: 1, maximum: 10_000 }),
    /** From the person's first frame to the decision, ms. */
    latencyMs: Millis,
    model: ModelRef,
    /** Whether a JPEG snapshot follows on `.../snapshot/{id}`. */
    snapshot: Type.Boolean(),
    /**
     * Which sensor found the face (optional: older agents omit it). `thermal` means the visible
     * model never saw it, so `mask` is `unknown`.
     */
    detectedBy: Type.Optional(DetectedBy),
  },
  { ...closed, $id: 'Screening' },
);
export type Screening = Static<typeof Screening>;
export type Decision = Static<typeof Decision>;
export type MaskState = Static<typeof MaskState>;
export type DetectedBy = Static<typeof DetectedBy>;
export type Reason = Static<typeof Reason>;
export type ScreeningMode = Static<typeof ScreeningMode>;
export type BlackbodyReading = Static<typeof BlackbodyReading>;
export type ModelRef = Static<typeof ModelRef>;

const SourceStatus = Type.Object(
  {
    kind: ShortText(32),
    status: Type.Union([Type.Literal('ok'), Type.Literal('starting'), Type.Literal('error'), Type.Literal('stopped')]),
    error: Type.Optional(ShortText(512)),
  },
  closed,
);

export const ReferenceStatus = Type.Union([
  Type.Literal('ok'),
  Type.Literal('not_configured'),
  Type.Literal('not_seen'),
  Type.Literal('unstable'),
  Type.Literal('stale'),
]);
export type ReferenceStatus = Static<typeof ReferenceStatus>;

export const CheckpointState = Type.Object(
  {
    status: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    ts: Timestamp,
    site: Id,
    checkpoint: Id,
    // The rest is absent in the offline last will, which is fixed at connect time.
    versions: Type.Optional(Type.Record(Type.String({ pattern: '^[a-z0-9-]{1,32}$' }), ShortText(64), { maxProperties: 16 })),
    sources: Type.Optional(Type.Object({ thermal: SourceStatus, visible: Nullable(SourceStatus) }, closed)),
    model: Type.Optional(Nullable(ModelRef)),
    calibration: Type.Optional(
      Type.Object(
        {
          reference: ReferenceStatus,
          mode: ScreeningMode,
          thresholdC: Type.Number({ minimum: 30, maximum: 45 }),
          homography: Type.Boolean(),
        },
        closed,
      ),
    ),
  },
  { ...closed, $id: 'CheckpointState' },
);
export type CheckpointState = Static<typeof CheckpointState>;

export const Telemetry = Type.Object(
  {
    ts: Timestamp,
    site: Id,
    checkpoint: Id,
    fps: Type.Number({ minimum: 0, maximum: 1000 }),
    /** Median stage latencies over the reporting interval, ms. */
    stages: Type.Record(Type.String({ pattern: '^[a-z][a-zA-Z]{0,31}$' }), Millis, { maxProperties: 16 }),
    cpuTempC: Nullable(Celsius),
    ambientC: Nullable(Celsius),
    blackbody: Nullable(
      Type.Object({ setC: Celsius, measuredC: Nullable(Celsius), status: ReferenceStatus }, closed),
    ),
    /** Messages waiting in the outbox (not yet acknowledged by the broker). */
    queueDepth: Type.Integer({ minimum: 0 }),
    rssMb: Type.Optional(Type.Number({ minimum: 0 })),
    droppedFrames: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { ...closed, $id: 'Telemetry' },
);
export type Telemetry = Static<typeof Telemetry>;

// ---- commands -------------------------------------------------------------------------------

const CommandId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'unique command id (ULID recommended)' });
const commandBase = { id: CommandId, ts: Type.Optional(Timestamp) };

export const SetConfigCommand = Type.Object(
  {
    ...commandBase,
    type: Type.Literal('set-config'),
    /** A partial agent config, validated by the agent against its own config schema. */
    config: Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 64 }),
  },
  closed,
);
export const CalibrateCommand = Type.Object(
  {
    ...commandBase,
    type: Type.Literal('calibrate'),
    action: Type.Union([Type.Literal('check-reference'), Type.Literal('set-blackbody'), Type.Literal('set-homography')]),
    params: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 32 })),
  },
  closed,
);
export const UpdateModelCommand = Type.Object(
  {
    ...commandBase,
    type: Type.Literal('update-model'),
    model: Type.Object(
      {
        name: ShortText(64),
        version: ShortText(32),
        url: Type.String({ pattern: '^https?://', maxLength: 2048 }),
        sha256: Sha256,
        sizeBytes: Type.Integer({ minimum: 1 }),
      },
      closed,
    ),
  },
  closed,
);
export const FlashFirmwareCommand = Type.Object(
  {
    ...commandBase,
    type: Type.Literal('flash-firmware'),
    port: ShortText(256),
    imageUrl: Type.String({ pattern: '^https?://', maxLength: 2048 }),
    sha256: Sha256,
    signature: Type.String({ pattern: '^[A-Za-z0-9+/=]{1,256}$' }),
  },
  closed,
);
export const PingCommand = Type.Object({ ...commandBase, type: Type.Literal('ping') }, closed);

export const Command = Type.Union(
  [SetConfigCommand, CalibrateCommand, UpdateModelCommand, FlashFirmwareCommand, PingCommand],
  { $id: 'Command' },
);
export type Command = Static<typeof Command>;
export type CommandType = Command['type'];

export const CommandAck = Type.Object(
  {
    id: CommandId,
    ts: Timestamp,
    ok: Type.Boolean(),
    /** Set when ok is false: what went wrong, for the engineer. */
    error: Type.Optional(ShortText(1024)),
    /** 0..1 for long commands (model download, flashing); absent on the final ack. */
    progress: Type.Optional(Ratio),
    done: Type.Optional(Type.Boolean()),
    detail: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 32 })),
  },
  { ...closed, $id: 'CommandAck' },
);
export type CommandAck = Static<typeof CommandAck>;
