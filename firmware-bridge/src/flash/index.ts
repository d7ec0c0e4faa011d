/** MCU flashing: STM32 UART bootloader (AN3155), signed images, and a bootloader emulator for tests. */
export { flashImage, FlashFailedError, FlashRefusedError } from './flash.js';
export type { FlashOptions, FlashPhase, FlashProgress, FlashResult } from './flash.js';
export { generateSigningKeys, signImage, verifySignedImage, parseSignatureFile, formatSignatureFile, signedBytes, SignatureError } from './signing.js';
export type { FirmwareManifest, SignatureFile } from './signing.js';
export { runFlashCli, runKeygenCli, runSignCli } from './cli.js';
export type { FlashCliIo } from './cli.js';
export { Bootloader, NackError, DEFAULT_TIMEOUTS } from './bootloader.js';
export type { BootloaderTimeouts } from './bootloader.js';
export { SerialLink, LinkTimeoutError, PortLostError } from './link.js';
export type { ByteLink } from './link.js';
export { KNOWN_CHIPS, pagesFor } from './layout.js';
export type { ChipInfo, FlashLayout } from './layout.js';
export { An3155Device, An3155Emulator, FlashMemory, connectInMemory } from './emulator.js';
export type { DeviceOptions, EmulatorFaults } from './emulator.js';
