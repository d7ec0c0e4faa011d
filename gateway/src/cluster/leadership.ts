/**
 * Leadership among gateways sharing one database: what must run once (alert escalation,
 * retention, fleet dispatch) runs on the leader only. The pure state machine: the adapter
 * (postgres-leadership.ts) feeds it what happened on its connection and carries out the actions
 * it returns. Leading needs a live connection holding the lock, so a lost connection ends
 * leadership at once — before anything else is done — even though the database may take a
 * moment to notice and free the lock for a follower.
 */

export type LeadershipRole = 'connecting' | 'follower' | 'leader' | 'stopped';

export type LeadershipEvent =
  /** The dedicated connection is open. */
  | { type: 'connected' }
  /** The answer to a lock attempt on the current connection. */
  | { type: 'lock-answer'; acquired: boolean }
  /** The answer to a leader's check: does its connection still hold the lock? */
  | { type: 'check-answer'; held: boolean }
  /** The connection ended, failed, or did not answer a check in time. */
  | { type: 'connection-lost' }
  | { type: 'stop' };

export type LeadershipAction =
  /** Start acting as leader (start the once-only work). */
  | 'lead'
  /** Stop acting as leader at once (stop the once-only work). */
  | 'cease'
  /** Try to take the lock (again, after the retry interval when already tried). */
  | 'try-lock'
  /** Check, while leading, that the connection still answers and holds the lock (after the check interval). */
  | 'check'
  /** Open a new connection (after the retry interval). */
  | 'reconnect'
  /** Close the connection (frees the lock). */
  | 'disconnect';

export interface LeadershipStep {
  role: LeadershipRole;
  actions: LeadershipAction[];
}

export function nextLeadership(role: LeadershipRole, event: LeadershipEvent): LeadershipStep {
  if (role === 'stopped') return { role, actions: [] };
  switch (event.type) {
    case 'stop':
      return { role: 'stopped', actions: role === 'leader' ? ['cease', 'disconnect'] : ['disconnect'] };
    case 'connection-lost':
      return { role: 'connecting', actions: role === 'leader' ? ['cease', 'reconnect'] : ['reconnect'] };
    case 'connected':
      // Only a connection being opened can report itself open; anything else is a stale report.
      return role === 'connecting' ? { role: 'follower', actions: ['try-lock'] } : { role, actions: [] };
    case 'lock-answer':
      if (role === 'follower') return event.acquired ? { role: 'leader', actions: ['lead', 'check'] } : { role, actions: ['try-lock'] };
      // Only followers try: an answer arriving otherwise is stale (the adapter drops answers of lost connections).
      return { role, actions: [] };
    case 'check-answer':
      if (role !== 'leader') return { role, actions: [] };
      return event.held ? { role, actions: ['check'] } : { role: 'follower', actions: ['cease', 'try-lock'] };
  }
}
