// The few WebAssembly JS API types the backend uses: the repository's TS lib (ES2022 +
// node types) declares no WebAssembly namespace, and adding the DOM lib would leak
// browser globals into every package.

export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
export type WasmModule = object;
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  instantiate(module: WasmModule, imports: object): Promise<WasmInstance>;
}

export const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
