/** The leadership state machine (src/cluster/leadership.ts), pure. */
import { describe, expect, it } from 'vitest';
import { nextLeadership, type LeadershipEvent, type LeadershipRole } from '../src/cluster/leadership.js';

/** Runs events from `role`, returning each step's role and actions. */
function run(role: LeadershipRole, events: LeadershipEvent[]): string[] {
  const out: string[] = [];
  for (const event of events) {
    const step = nextLeadership(role, event);
    role = step.role;
    out.push(`${step.role}:${step.actions.join(',')}`);
  }
  return out;
}

describe('leadership state machine', () => {
  it('connects, tries the lock until it gets it, then leads and keeps checking', () => {
    expect(
      run('connecting', [
        { type: 'connected' },
        { type: 'lock-answer', acquired: false },
        { type: 'lock-answer', acquired: false },
        { type: 'lock-answer', acquired: true },
        { type: 'check-answer', held: true },
      ]),
    ).toEqual(['follower:try-lock', 'follower:try-lock', 'follower:try-lock', 'leader:lead,check', 'leader:check']);
  });

  it('ceases at once when the leading connection is lost, then reconnects as a follower', () => {
    expect(run('leader', [{ type: 'connection-lost' }, { type: 'connected' }, { type: 'lock-answer', acquired: true }])).toEqual([
      'connecting:cease,reconnect',
      'follower:try-lock',
      'leader:lead,check',
    ]);
  });

  it('ceases when a check finds the lock no longer held, and tries again', () => {
    expect(run('leader', [{ type: 'check-answer', held: false }])).toEqual(['follower:cease,try-lock']);
  });

  it('a follower losing its connection has nothing to cease', () => {
    expect(run('follower', [{ type: 'connection-lost' }])).toEqual(['connecting:reconnect']);
    expect(run('connecting', [{ type: 'connection-lost' }])).toEqual(['connecting:reconnect']);
  });

  it('ignores answers that arrive in the wrong role (stale answers of a lost connection)', () => {
    expect(run('connecting', [{ type: 'lock-answer', acquired: true }, { type: 'check-answer', held: true }])).toEqual(['connecting:', 'connecting:']);
    expect(run('follower', [{ type: 'check-answer', held: true }, { type: 'connected' }])).toEqual(['follower:', 'follower:']);
    expect(run('leader', [{ type: 'lock-answer', acquired: true }, { type: 'connected' }])).toEqual(['leader:', 'leader:']);
  });

  it('stops for good: a leader ceases and disconnects, anyone else disconnects, nothing happens after', () => {
    expect(run('leader', [{ type: 'stop' }, { type: 'connected' }, { type: 'lock-answer', acquired: true }, { type: 'stop' }])).toEqual([
      'stopped:cease,disconnect',
      'stopped:',
      'stopped:',
      'stopped:',
    ]);
    expect(run('follower', [{ type: 'stop' }])).toEqual(['stopped:disconnect']);
    expect(run('connecting', [{ type: 'stop' }])).toEqual(['stopped:disconnect']);
  });
});
