// What this machine offers: CPU model and cores, memory, WebAssembly SIMD.

import os from 'node:os';

// The ES2022 lib has no WebAssembly types (they come with the DOM lib); this is all we use.
declare const WebAssembly: { validate(bytes: Uint8Array): boolean };

// (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt): validates only where the
// engine implements fixed-width SIMD (the same probe as wasm-feature-detect's).
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03,
  0x02, 0x01, 0x00, 0x0a, 0x0a, 0x01, 0x08, 0x00, 0x41, 0x00, 0xfd, 0x0f, 0xfd, 0x62, 0x0b,
]);

export function wasmSimdSupported(): boolean {
  return WebAssembly.validate(SIMD_PROBE);
}

export interface HostInfo {
  cpuModel: string;
  /** Logical cores Node may use (os.availableParallelism). */
  cores: number;
  arch: string;
  platform: string;
  memoryBytes: number;
  wasmSimd: boolean;
  node: string;
}

export function hostInfo(): HostInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() || 'unknown',
    cores: os.availableParallelism(),
    arch: os.arch(),
    platform: `${os.type()} ${os.release()}`,
    memoryBytes: os.totalmem(),
    wasmSimd: wasmSimdSupported(),
    node: process.version,
  };
}
