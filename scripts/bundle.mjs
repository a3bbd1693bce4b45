// Bundles a TypeScript entry of this repository into Node ESM with esbuild: the CLI
// (packages/cli/build.mjs) and the benchmark runner (scripts/bench-kernels.mjs) share it.
//
// What it handles beyond plain esbuild:
// - `new URL('<relative path>', import.meta.url)` in our sources (wasm, WGSL, worker
//   scripts, asset folders): the file is copied (a .ts/.js/.mjs worker is bundled on its
//   own) into `<outdir>/assets/` and the literal rewritten, so the bundle finds it at run time.
// - `import text from './x.wgsl'` (or `./x.wgsl?raw`, as vite spells it) becomes a string.
// - A relative dynamic import that does not resolve (a backend not written yet) is left to
//   fail at run time, where the kernels package reports the backend as "not built".
// - Code splitting keeps dynamic imports lazy, so `webgpu` (external) loads only when the
//   webgpu backend is asked for.

import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const ASSET_URL = /new\s+URL\(\s*(['"])([^'"`$\n]+)\1\s*,\s*import\.meta\.url\s*\)/g;
const SCRIPT_EXT = /\.(?:[cm]?[jt]s)$/;

/** @param {Buffer} buf */
function contentHash(buf) {
  return createHash('sha256').update(buf).digest('hex').slice(0, 8);
}

/** @param {string} dir */
function folderHash(dir) {
  const h = createHash('sha256');
  /** @param {string} d */
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      h.update(relative(dir, p));
      if (statSync(p).isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex').slice(0, 8);
}

/** @param {string} from @param {string} to */
function copyFolder(from, to) {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    if (statSync(src).isDirectory()) copyFolder(src, dst);
    else copyFileSync(src, dst);
  }
}

/**
 * `./x.js` in a TS source may name `./x.ts` (NodeNext style).
 * @param {string} path
 */
function existingTarget(path) {
  if (existsSync(path)) return path;
  for (const [from, to] of [['.js', '.ts'], ['.mjs', '.mts'], ['.cjs', '.cts']]) {
    if (path.endsWith(from) && existsSync(path.slice(0, -from.length) + to)) return path.slice(0, -from.length) + to;
  }
  return null;
}

/** @param {string} from @param {string} to */
function toPosixRelative(from, to) {
  const r = relative(from, to).split(sep).join('/');
  return r.startsWith('.') ? r : `./${r}`;
}

/**
 * @param {object} o
 * @param {string} o.assetsDir absolute folder that receives assets
 * @param {string} o.codeDir absolute folder where the code that references them is written
 * @param {(entry: string, outdir: string) => Promise<string>} o.bundleWorker bundles a worker script, returns its output path
 * @returns {import('esbuild').Plugin}
 */
function assetPlugin({ assetsDir, codeDir, bundleWorker }) {
  /** @type {Map<string, string>} source path -> emitted path (one copy per asset) */
  const done = new Map();
  return {
    name: 'ibq-assets',
    setup(build) {
      build.onResolve({ filter: /\.wgsl(\?raw)?$/ }, (args) => ({
        path: resolve(args.resolveDir, args.path.replace(/\?raw$/, '')),
        namespace: 'ibq-text',
      }));
      build.onLoad({ filter: /.*/, namespace: 'ibq-text' }, (args) => ({
        contents: readFileSync(args.path, 'utf8'),
        loader: 'text',
        watchFiles: [args.path],
      }));

      // A relative dynamic import that cannot be resolved stays a run-time import.
      build.onResolve({ filter: /^\.\.?\// }, async (args) => {
        if (args.kind !== 'dynamic-import' || args.pluginData?.ibqRetry) return undefined;
        const r = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { ibqRetry: true } });
        if (r.errors.length === 0) return r;
        return {
          path: args.path,
          external: true,
          warnings: [{ text: `dynamic import '${args.path}' does not resolve; left to fail at run time` }],
        };
      });

      build.onLoad({ filter: SCRIPT_EXT }, async (args) => {
        if (args.path.includes(`${sep}node_modules${sep}`)) return undefined;
        const source = readFileSync(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return undefined;
        /** @type {import('esbuild').PartialMessage[]} */
        const errors = [];
        /** @type {string[]} */
        const watchFiles = [];
        /** @type {{ match: string, spec: string }[]} */
        const pending = [];
        for (const m of source.matchAll(ASSET_URL)) pending.push({ match: m[0], spec: m[2] });
        let contents = source;
        for (const { match, spec } of pending) {
          if (/^[a-z][a-z0-9+.-]*:/i.test(spec)) continue; // absolute URL (file:, data:, https:)
          const target = existingTarget(resolve(dirname(args.path), spec));
          if (!target) {
            errors.push({ text: `asset '${spec}' referenced from ${relative(REPO_ROOT, args.path)} does not exist (is the package built?)` });
            continue;
          }
          watchFiles.push(target);
          let emitted = done.get(target);
          if (!emitted) {
            if (statSync(target).isDirectory()) {
              emitted = join(assetsDir, `${basename(target)}-${folderHash(target)}`);
              rmSync(emitted, { recursive: true, force: true });
              copyFolder(target, emitted);
            } else if (SCRIPT_EXT.test(target)) {
              emitted = await bundleWorker(target, assetsDir);
            } else {
              const buf = readFileSync(target);
              const ext = extname(target);
              emitted = join(assetsDir, `${basename(target, ext)}-${contentHash(buf)}${ext}`);
              mkdirSync(assetsDir, { recursive: true });
              copyFileSync(target, emitted);
            }
            done.set(target, emitted);
          }
          const rewritten = toPosixRelative(codeDir, emitted) + (spec.endsWith('/') ? '/' : '');
          contents = contents.split(match).join(`new URL(${JSON.stringify(rewritten)}, import.meta.url)`);
        }
        if (errors.length) return { errors };
        const loader = args.path.endsWith('ts') ? 'ts' : 'js';
        return { contents, loader, resolveDir: dirname(args.path), watchFiles };
      });
    },
  };
}

/**
 * Keeps every bare import external except this repository's workspaces (@ibq/*).
 * @type {import('esbuild').Plugin}
 */
const externalDependencies = {
  name: 'ibq-external-dependencies',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('@ibq/') || args.path.startsWith('node:')) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/**
 * Bundles `entry` into `outdir/<name>.mjs` (plus lazily loaded chunks and `assets/`).
 * @param {object} o
 * @param {string} o.entry absolute path of the TypeScript entry
 * @param {string} o.outdir absolute output folder (emptied first)
 * @param {string} [o.name] output file name without extension (default: the entry's)
 * @param {string[]} [o.external] bare packages to keep external (e.g. native addons)
 * @param {boolean} [o.externalDependencies] keep every non-workspace package external
 * @param {boolean} [o.executable] add a `#!/usr/bin/env node` line
 * @returns {Promise<{ outfile: string, warnings: string[] }>}
 */
export async function bundle({ entry, outdir, name, external = [], externalDependencies: keepDeps = false, executable = false }) {
  rmSync(outdir, { recursive: true, force: true });
  const outName = name ?? basename(entry).replace(/\.[cm]?[jt]s$/, '');
  const assetsDir = join(outdir, 'assets');
  /** @type {string[]} */
  const warnings = [];

  /**
   * @param {string} codeDir
   * @returns {import('esbuild').BuildOptions & { banner: { js: string } }}
   */
  const common = (codeDir) => ({
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'silent',
    external,
    loader: { '.wasm': 'file' },
    assetNames: 'assets/[name]-[hash]',
    // CommonJS code inside an ESM bundle may call require() for Node built-ins.
    banner: { js: "import { createRequire as __ibqCreateRequire } from 'node:module'; const require = __ibqCreateRequire(import.meta.url);" },
    plugins: [
      ...(keepDeps ? [externalDependencies] : []),
      assetPlugin({ assetsDir, codeDir, bundleWorker }),
    ],
  });

  /** @param {string} workerEntry @param {string} dir */
  async function bundleWorker(workerEntry, dir) {
    const workerName = basename(workerEntry).replace(/\.[cm]?[jt]s$/, '');
    const tmp = join(dir, `.${workerName}-build`);
    const result = await esbuild.build({ ...common(dir), sourcemap: false, entryPoints: [workerEntry], outfile: join(tmp, `${workerName}.mjs`) });
    warnings.push(...result.warnings.map((w) => w.text));
    const code = readFileSync(join(tmp, `${workerName}.mjs`));
    const finalPath = join(dir, `${workerName}-${contentHash(code)}.mjs`);
    copyFileSync(join(tmp, `${workerName}.mjs`), finalPath);
    rmSync(tmp, { recursive: true, force: true });
    return finalPath;
  }

  let result;
  try {
    result = await esbuild.build({
      ...common(outdir),
      entryPoints: { [outName]: entry },
      outdir,
      splitting: true,
      entryNames: '[name]',
      chunkNames: 'chunk-[hash]',
      outExtension: { '.js': '.mjs' },
      banner: {
        js: (executable ? '#!/usr/bin/env node\n' : '') + common(outdir).banner.js,
      },
    });
  } catch (err) {
    const e = /** @type {Error & { errors?: import('esbuild').Message[] }} */ (err);
    const messages = (e.errors ?? []).map((m) => `${m.location ? `${relative(REPO_ROOT, m.location.file)}:${m.location.line}: ` : ''}${m.text}`);
    throw new Error(`esbuild failed to bundle ${relative(REPO_ROOT, entry)}:\n  ${messages.join('\n  ') || e.message}`);
  }
  warnings.push(...result.warnings.map((w) => w.text));
  return { outfile: join(outdir, `${outName}.mjs`), warnings };
}
