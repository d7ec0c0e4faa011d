/**
 * The guard screen's chime: two soft tones from WebAudio (no sound file to ship). Browsers keep
 * audio suspended until the page has been touched; `needsGesture` tells the page to offer a
 * button. Every chime is counted on <body data-chimes> so a test (or a curious engineer) can see it.
 */
const MUTE_KEY = 'checkpoint.muted';

export class Chime {
  private ctx: AudioContext | null = null;
  muted: boolean;

  constructor() {
    let stored: string | null = null;
    try {
      stored = localStorage.getItem(MUTE_KEY);
    } catch {
      // no storage: not muted
    }
    this.muted = stored === '1';
  }

  setMuted(muted: boolean): void {
    this.muted = muted;
    try {
      localStorage.setItem(MUTE_KEY, muted ? '1' : '0');
    } catch {
      // not remembered
    }
    if (!muted) void this.unlock();
  }

  private context(): AudioContext | null {
    if (!this.ctx && typeof AudioContext !== 'undefined') this.ctx = new AudioContext();
    return this.ctx;
  }

  /** Whether audio is blocked until the user touches the page. */
  get needsGesture(): boolean {
    return !this.muted && this.context()?.state === 'suspended';
  }

  async unlock(): Promise<void> {
    await this.context()?.resume().catch(() => undefined);
  }

  /**
   * `chime`: two soft tones, someone to check. `alarm`: four harsh alternating tones, something
   * stopped working (counted apart, on <body data-alarms>).
   */
  play(kind: 'chime' | 'alarm' = 'chime'): void {
    const body = document.body;
    const counter = kind === 'chime' ? 'chimes' : 'alarms';
    body.dataset[counter] = String(Number(body.dataset[counter] ?? '0') + 1);
    if (this.muted) return;
    const ctx = this.context();
    if (!ctx) return;
    const start = ctx.currentTime + 0.02;
    const tones = kind === 'chime' ? [880, 660] : [990, 740, 990, 740];
    for (const [i, freq] of tones.entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = kind === 'chime' ? 'sine' : 'square';
      osc.frequency.value = freq;
      const t0 = start + i * 0.28;
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.4, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.5);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0);
      osc.stop(t0 + 0.55);
    }
    body.dataset[`${counter}Audible`] = String(Number(body.dataset[`${counter}Audible`] ?? '0') + 1);
  }

  close(): void {
    void this.ctx?.close().catch(() => undefined);
    this.ctx = null;
  }
}
