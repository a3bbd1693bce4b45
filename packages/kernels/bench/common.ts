// Shared benchmark plumbing: options, timing (warm-up, then the median of at least 5 runs),
// and one JSON line per figure on stdout.

export interface BenchOptions {
  backend: string;
  threads: number;
  runs: number;
  /** Only figures whose op contains this string. */
  filter?: string;
  /** Smaller shapes: a smoke test of the benchmark itself, not figures to quote. */
  quick: boolean;
  /** Skip the peers. */
  noPeers: boolean;
}

export interface Figure {
  op: string;
  shape: Record<string, number | string>;
  backend: string;
  threads: number;
  /** Median milliseconds over `runs` runs after warm-up. */
  ms: number;
  runs: number;
  gflops?: number;
  peer?: string;
  /** Peer time / our time on the same work: > 1 means we are faster. */
  ratio?: number;
  [key: string]: unknown;
}

export function emit(f: Figure): void {
  const out: Record<string, unknown> = { ...f, ms: round(f.ms) };
  if (f.gflops !== undefined) out.gflops = round(f.gflops);
  if (f.ratio !== undefined) out.ratio = round(f.ratio, 3);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function round(x: number, digits = 2): number {
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

/** Runs `fn` once to warm up, then `runs` times; returns the median in ms. */
export async function time(fn: () => unknown | Promise<unknown>, runs: number): Promise<number> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  const mid = t.length >> 1;
  return t.length % 2 ? t[mid] : (t[mid - 1] + t[mid]) / 2;
}

/**
 * Times several variants of the same work interleaved (one run of each in turn, `runs` rounds,
 * after a warm-up of each), so that load on a shared machine falls on all of them alike;
 * returns each variant's median in ms.
 */
export async function timeInterleaved(fns: readonly (() => unknown | Promise<unknown>)[], runs: number): Promise<number[]> {
  for (const fn of fns) await fn();
  const t: number[][] = fns.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < fns.length; i++) {
      const t0 = performance.now();
      await fns[i]();
      t[i].push(performance.now() - t0);
    }
  }
  return t.map((ts) => {
    ts.sort((a, b) => a - b);
    const mid = ts.length >> 1;
    return ts.length % 2 ? ts[mid] : (ts[mid - 1] + ts[mid]) / 2;
  });
}

export function parseArgs(argv: readonly string[]): BenchOptions {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0) return argv[i + 1];
    const eq = argv.find((a) => a.startsWith(`--${name}=`));
    return eq?.slice(name.length + 3);
  };
  const threadsArg = get('threads') ?? process.env.IBQ_THREADS;
  const runs = Math.max(5, Number(get('runs') ?? 5));
  return {
    backend: get('backend') ?? 'cpu',
    threads: threadsArg ? Number(threadsArg) : 0,
    runs,
    filter: get('filter'),
    quick: argv.includes('--quick'),
    noPeers: argv.includes('--no-peers'),
  };
}

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return a;
}
