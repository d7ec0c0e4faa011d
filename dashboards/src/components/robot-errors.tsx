/**
 * A robot's errors in the page's language: the error's kind and level from the catalogue, and the
 * robot's own description as it sent it, set apart and marked as not translated.
 */
import type { Robot } from '../fleet.js';
import { useI18n } from '../i18n/index.js';
import { robotErrors } from '../task-history.js';

export function RobotErrors({ errors }: { errors: Robot['errors'] }) {
  const { t } = useI18n();
  return (
    <ul class="robot-errors">
      {robotErrors(errors).map((e, i) => (
        <li key={i} data-error-type={e.type} data-error-level={e.level ?? ''}>
          <strong>{e.known ? t(`robotError.type.${e.known}`) : e.type ? t('robotError.unknownType', { type: e.type }) : t('robotState.error')}</strong>
          {e.level && <> ({t(`robotError.level.${e.level}`)})</>}
          {e.description && (
            <span class="original">
              {' '}
              {t('robotError.robotSays')} <q>{e.description}</q>
            </span>
          )}
        </li>
      ))}
    </ul>
  );
}
