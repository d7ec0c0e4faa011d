/**
 * The aggregate stores' contract tests (test/helpers/store-contracts.ts) on SQLite: each test on a
 * fresh gateway.sqlite file in a temp dir, opened (and migrated) as the gateway opens it.
 */
import { openDatabase, type Db } from '../src/store/db.js';
import { createSqliteAlertStore } from '../src/store/alerts.js';
import { createSqliteAuditStore } from '../src/store/audit.js';
import { createSqliteDeviceStore } from '../src/store/devices.js';
import { createSqliteEventStore } from '../src/store/events.js';
import { createSqliteFailedMessageStore } from '../src/store/failed-messages.js';
import { createFleetStore } from '../src/store/fleet.js';
import { createSqliteScreeningStore } from '../src/store/screenings.js';
import { createSqliteSnapshotStore } from '../src/store/snapshots.js';
import { createSqliteSpoolStore } from '../src/store/spool.js';
import { createUserStore } from '../src/store/users.js';
import { createProvisioningStore } from '../src/provisioning/store.js';
import { makeTempDir } from '@checkpoint/test-support';
import {
  alertStoreContract,
  auditStoreContract,
  deviceStoreContract,
  eventStoreContract,
  failedMessageStoreContract,
  fleetStoreContract,
  screeningStoreContract,
  snapshotStoreContract,
  spoolStoreContract,
  userStoreContract,
  provisioningStoreContract,
  type Factory,
} from './helpers/store-contracts.js';

function sqlite<S>(create: (db: Db) => S): Factory<S> {
  return () => {
    const db = openDatabase(makeTempDir('gw-store-contract'));
    return {
      store: create(db),
      close() {
        db.close();
      },
    };
  };
}

screeningStoreContract('SQLite', sqlite(createSqliteScreeningStore));
alertStoreContract('SQLite', sqlite(createSqliteAlertStore));
deviceStoreContract('SQLite', sqlite(createSqliteDeviceStore));
snapshotStoreContract('SQLite', sqlite(createSqliteSnapshotStore));
auditStoreContract('SQLite', sqlite(createSqliteAuditStore));
eventStoreContract('SQLite', sqlite(createSqliteEventStore));
spoolStoreContract('SQLite', sqlite(createSqliteSpoolStore));
failedMessageStoreContract('SQLite', sqlite(createSqliteFailedMessageStore));
fleetStoreContract(
  'SQLite',
  sqlite((db) => ({ fleet: createFleetStore(db), spool: createSqliteSpoolStore(db), events: createSqliteEventStore(db), audit: createSqliteAuditStore(db) })),
);
userStoreContract('SQLite', sqlite((db) => createUserStore(db)));
provisioningStoreContract('SQLite', sqlite((db) => createProvisioningStore(db, makeTempDir('gw-models'))));
