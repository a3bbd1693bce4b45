// Which backends a test run covers. reference always; cpu and webgpu when present.
// An absent backend is skipped with its reason printed, except webgpu when
// IBQ_REQUIRE_WEBGPU=1 (CI), where its absence fails the run.
// IBQ_BACKENDS=reference,cpu restricts the set.

import type { Backend } from '../types.js';
import { BACKEND_NAMES, type BackendName, type BackendOptions, probeBackends, supportsF16 } from '../backends/index.js';

export interface TestBackends {
  backends: Backend[];
  skipped: { name: string; reason: string }[];
  destroyAll(): void;
}

export function requestedBackends(): BackendName[] {
  const env = process.env.IBQ_BACKENDS;
  if (!env) return BACKEND_NAMES;
  const names = env.split(',').map((s) => s.trim()).filter(Boolean) as BackendName[];
  for (const n of names) if (!BACKEND_NAMES.includes(n)) throw new Error(`IBQ_BACKENDS: unknown backend '${n}' (known: ${BACKEND_NAMES.join(', ')})`);
  return names;
}

/** `options` go to every backend created (e.g. `{ f16: true }` for webgpu's shader-f16). */
export async function testBackends(names: BackendName[] = requestedBackends(), options: BackendOptions = {}): Promise<TestBackends> {
  const probes = await probeBackends(names, options);
  const skipped: { name: string; reason: string }[] = [];
  for (const p of probes) {
    if (p.backend) continue;
    if (p.name === 'webgpu' && process.env.IBQ_REQUIRE_WEBGPU === '1') {
      throw new Error(`IBQ_REQUIRE_WEBGPU=1 but the webgpu backend is unavailable: ${p.reason}`);
    }
    skipped.push({ name: p.name, reason: p.reason! });
    console.warn(`[harness] skipping backend '${p.name}': ${p.reason}`);
  }
  const backends = probes.filter((p) => p.backend).map((p) => p.backend!);
  return { backends, skipped, destroyAll: () => backends.forEach((b) => b.destroy()) };
}

export interface F16TestBackend {
  /** webgpu with shader-f16, or null when this run has none. */
  backend: Backend | null;
  /** Why there is none (for the skipped tests' names). */
  reason: string | null;
  destroy(): void;
}

/** The backend the mixed-precision tests run on: webgpu with f16, where IBQ_BACKENDS allows it and the adapter has it. */
export async function testF16Backend(): Promise<F16TestBackend> {
  if (!requestedBackends().includes('webgpu')) return { backend: null, reason: 'IBQ_BACKENDS leaves webgpu out', destroy: () => {} };
  const { backends, skipped, destroyAll } = await testBackends(['webgpu'], { f16: true });
  const backend = backends[0] ?? null;
  const f16 = backend ? supportsF16(backend) : null;
  const reason = !backend ? `no webgpu backend: ${skipped[0]?.reason}` : f16 !== true ? `webgpu without f16: ${f16}` : null;
  if (reason) console.warn(`[harness] the f16 tests are skipped: ${reason}`);
  return { backend: reason ? null : backend, reason, destroy: destroyAll };
}
