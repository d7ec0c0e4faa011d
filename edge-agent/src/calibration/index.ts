/** Camera calibration: visible → thermal homography from point pairs, blackbody region and stability. */
export { fitHomography, symmetricEigen, CalibrationError } from './homography.js';
export type { FitOptions, HomographyFit, PointPair } from './homography.js';
export { assessBlackbodyStability, blackbodySample, findBlackbody } from './blackbody.js';
export type { BlackbodyProposal, BlackbodySample, FindOptions, StabilityOptions, StabilityReport } from './blackbody.js';
export { runCalibrate, parsePairs, parseRegion, writeCalibration } from './command.js';
export type { CalibrateArgs, CalibrateIo, CalibrationOutcome } from './command.js';
