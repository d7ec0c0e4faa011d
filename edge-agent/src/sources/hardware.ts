/**
 * Live-hardware sources: thermal (GY-MCU90640 over UART, Y16 pipes such as a PureThermal
 * Lepton) and visible (MJPEG pipes, HTTP snapshots), plus the device emulators that speak the
 * same wire protocols for tests and demos.
 */
export * from './gy-mcu90640.js';
export * from './y16-stream.js';
export * from './mjpeg.js';
export * from './http-snapshot.js';
export * from './emulators/gy-mcu90640-emulator.js';
