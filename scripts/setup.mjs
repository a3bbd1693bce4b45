// `npm run setup`: everything a fresh machine needs, then the build. Node built-ins only
// (it runs before node_modules exists). Safe to run again: each step checks first.
//
// 1. System packages (root on Debian): Mesa's software Vulkan driver, version 25 or later
//    (bookworm has it in bookworm-backports), so that WebGPU runs without a GPU, and the
//    Fashion-MNIST data set. Elsewhere it prints what to install instead.
//    MPICH (mpich, libmpich-dev) for multi-process training; without it (or on other systems,
//    where it prints what to install) setup still succeeds and training runs in one process.
// 2. npm ci --ignore-scripts: install scripts are not needed (esbuild, turbo and webgpu ship
//    their binaries; onnxruntime-node's script downloads CUDA files we do not use).
// 3. npm run build (which builds the MPI addon of packages/mpi when MPI is there).
//
// usage: node scripts/setup.mjs [--skip-system] [--skip-install]

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MIN_NODE = 20;
const MIN_MESA = 25;
const BACKPORTS_LIST = '/etc/apt/sources.list.d/ibq-bookworm-backports.list';
const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** @param {string} msg */
const say = (msg) => console.log(`[setup] ${msg}`);
/** @param {string} msg */
const warn = (msg) => console.warn(`[setup] warning: ${msg}`);

class SetupError extends Error {}

/**
 * Runs a command with inherited output; throws SetupError if it fails.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{ env?: Record<string, string>, cwd?: string }} [options]
 */
function run(cmd, args, { env, cwd = ROOT } = {}) {
  say(`$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) throw new SetupError(`could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new SetupError(`'${[cmd, ...args].join(' ')}' failed (exit ${r.status ?? r.signal})`);
}

/** @returns {Record<string, string>} */
function osRelease() {
  try {
    const text = readFileSync('/etc/os-release', 'utf8');
    return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => {
      const i = l.indexOf('=');
      return [l.slice(0, i), l.slice(i + 1).replace(/^"|"$/g, '')];
    }));
  } catch {
    return {};
  }
}

/**
 * Installed version of a Debian package, or null.
 * @param {string} pkg
 * @returns {string | null}
 */
function installedVersion(pkg) {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const [status, version] = out.split('\t');
    return status.endsWith(' installed') ? version : null;
  } catch {
    return null;
  }
}

/**
 * Upstream major version of a Debian version string such as "25.0.7-2~bpo12+1" or "1:25.0.1-1".
 * @param {string} version
 */
function majorOf(version) {
  return Number(/^(?:\d+:)?(\d+)/.exec(version)?.[1] ?? NaN);
}

function vulkanDrivers() {
  const dirs = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];
  return dirs.flatMap((d) => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.json')) : []));
}

/** Every apt source line or deb822 stanza, flattened to text (to look for a suite). */
function aptSourcesText() {
  const files = ['/etc/apt/sources.list'];
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) for (const f of readdirSync(dir)) if (/\.(list|sources)$/.test(f)) files.push(join(dir, f));
  return files.filter(existsSync).map((f) => readFileSync(f, 'utf8')).join('\n')
    .split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
}

/**
 * The Debian mirror this machine already uses (so backports come from the same place).
 * @param {string} sources
 */
function debianMirror(sources) {
  const deb822 = /^URIs:\s*(\S+)/m.exec(sources.split(/\n\s*\n/).find((s) => /Suites:.*\bbookworm\b/.test(s) && !/security/.test(s)) ?? '');
  if (deb822) return deb822[1];
  const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(sources);
  return oneLine?.[1] ?? 'http://deb.debian.org/debian';
}

const OTHER_SYSTEMS = `
  A Vulkan driver lets the webgpu backend run without a GPU (Mesa's lavapipe, version ${MIN_MESA}+):
    Debian 12:      sudo apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1
                    (after adding 'deb http://deb.debian.org/debian bookworm-backports main')
    Debian 13+, Ubuntu 25.04+:  sudo apt-get install mesa-vulkan-drivers libvulkan1
    Fedora:         sudo dnf install mesa-vulkan-drivers vulkan-loader
    Arch:           sudo pacman -S vulkan-swrast vulkan-icd-loader
    macOS, Windows: nothing to install (Dawn uses Metal / Direct3D 12)
  Without a Vulkan driver (or GPU) the webgpu backend is reported unavailable and its tests
  are skipped; the reference and cpu backends still run.
  Fashion-MNIST: Debian's 'dataset-fashion-mnist' package, or the four *-ubyte.gz files from
  https://github.com/zalandoresearch/fashion-mnist placed in ${FASHION_MNIST_DIR}.`;

function systemPackages() {
  const rel = osRelease();
  const isDebian = rel.ID === 'debian' || existsSync('/etc/debian_version');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

  if (process.platform !== 'linux' || !isDebian) {
    say(`system packages: not a Debian system (${rel.PRETTY_NAME ?? process.platform}); nothing installed. Install instead:${OTHER_SYSTEMS}`);
    return;
  }

  const mesa = installedVersion('mesa-vulkan-drivers');
  const loader = installedVersion('libvulkan1');
  const fashion = installedVersion('dataset-fashion-mnist');
  const mesaOk = mesa !== null && majorOf(mesa) >= MIN_MESA;
  say(`system packages: mesa-vulkan-drivers ${mesa ?? 'missing'}${mesa && !mesaOk ? ` (older than ${MIN_MESA})` : ''}, ` +
    `libvulkan1 ${loader ?? 'missing'}, dataset-fashion-mnist ${fashion ?? 'missing'}`);
  if (mesaOk && loader && fashion) {
    say('system packages: already installed, nothing to do');
    return;
  }
  if (!isRoot) {
    warn('system packages are missing and this is not root: run setup as root, or install them yourself:' +
      (rel.VERSION_CODENAME === 'bookworm'
        ? `\n    echo 'deb http://deb.debian.org/debian bookworm-backports main' | sudo tee ${BACKPORTS_LIST}` +
          '\n    sudo apt-get update' +
          '\n    sudo apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1' +
          '\n    sudo apt-get install dataset-fashion-mnist'
        : '\n    sudo apt-get install mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist') +
      `\n  Continuing without them.${OTHER_SYSTEMS}`);
    return;
  }

  const aptEnv = { DEBIAN_FRONTEND: 'noninteractive' };
  const bookworm = rel.VERSION_CODENAME === 'bookworm';
  if (bookworm && (!mesaOk || !loader)) {
    const sources = aptSourcesText();
    if (/\bbookworm-backports\b/.test(sources)) {
      say('apt: bookworm-backports is already a source');
    } else {
      const line = `deb ${debianMirror(sources)} bookworm-backports main\n`;
      say(`apt: adding bookworm-backports (Mesa ${MIN_MESA} for Debian 12) in ${BACKPORTS_LIST}: ${line.trim()}`);
      writeFileSync(BACKPORTS_LIST, line);
    }
  }
  run('apt-get', ['update'], { env: aptEnv });
  if (!mesaOk || !loader) {
    run('apt-get', ['install', '-y', '--no-install-recommends', ...(bookworm ? ['-t', 'bookworm-backports'] : []), 'mesa-vulkan-drivers', 'libvulkan1'], { env: aptEnv });
    const now = installedVersion('mesa-vulkan-drivers');
    if (!now || majorOf(now) < MIN_MESA) {
      throw new SetupError(`mesa-vulkan-drivers ${now ?? 'is missing'} after installing; version ${MIN_MESA} or later is needed`);
    }
  }
  if (!fashion) run('apt-get', ['install', '-y', '--no-install-recommends', 'dataset-fashion-mnist'], { env: aptEnv });
  say('system packages: installed');
}

/** Whether an MPI C compiler wrapper answers (what packages/mpi builds against). */
function hasMpiWrapper() {
  const mpicc = process.env.MPICC || 'mpicc';
  return ['-show', '--showme'].some((flag) => spawnSync(mpicc, [flag], { stdio: 'ignore' }).status === 0);
}

const MPI_PACKAGES = ['mpich', 'libmpich-dev'];

/** MPICH for multi-process training (optional: without it training runs in one process). */
function mpiPackages() {
  if (hasMpiWrapper()) {
    say(`MPI: ${process.env.MPICC || 'mpicc'} found, the MPI addon will be built against it`);
    return;
  }
  const isDebian = process.platform === 'linux' && (osRelease().ID === 'debian' || existsSync('/etc/debian_version'));
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isDebian || !isRoot) {
    warn(`MPI: no mpicc found; multi-process training (mpiexec) needs MPI: ${isDebian ? 'sudo apt-get install mpich libmpich-dev' : 'install MPICH or Open MPI with its headers (or load the cluster\'s MPI module)'}, then npm run build. Continuing: training runs in one process.`);
    return;
  }
  const aptEnv = { DEBIAN_FRONTEND: 'noninteractive' };
  try {
    run('apt-get', ['install', '-y', '--no-install-recommends', ...MPI_PACKAGES], { env: aptEnv });
  } catch {
    run('apt-get', ['update'], { env: aptEnv });
    run('apt-get', ['install', '-y', '--no-install-recommends', ...MPI_PACKAGES], { env: aptEnv });
  }
  if (!hasMpiWrapper()) throw new SetupError(`${MPI_PACKAGES.join(' ')} installed, but mpicc does not answer`);
  say('MPI: installed MPICH');
}

function main() {
  const { values } = parseArgs({ options: { 'skip-system': { type: 'boolean' }, 'skip-install': { type: 'boolean' } } });
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < MIN_NODE) throw new SetupError(`Node ${MIN_NODE} or later is needed; this is ${process.version}`);

  if (values['skip-system']) say('system packages: skipped (--skip-system)');
  else {
    systemPackages();
    mpiPackages();
  }

  const drivers = vulkanDrivers();
  if (process.platform === 'linux') {
    if (drivers.length) say(`Vulkan drivers found: ${drivers.join(', ')}`);
    else warn('no Vulkan driver found: the webgpu backend will be unavailable and its tests skipped');
  }

  // npm sets npm_execpath when setup runs as `npm run setup`; use the same npm.
  const npmCli = /npm-cli\.js$/.test(process.env.npm_execpath ?? '') ? process.env.npm_execpath : undefined;
  /** @param {string[]} args */
  const npm = (args) => (npmCli ? run(process.execPath, [npmCli, ...args]) : run('npm', args));
  if (values['skip-install']) say('npm ci: skipped (--skip-install)');
  else npm(['ci', '--ignore-scripts', '--no-audit', '--no-fund']);
  npm(['run', 'build']);
  say(existsSync(join(ROOT, 'packages/mpi/build/Release/ibq_mpi.node'))
    ? 'MPI: addon built; multi-process training: mpiexec -n 2 npx ibq train ...'
    : 'MPI: addon not built (no MPI); training runs in one process');

  say('done. Next: `npm start` trains the demo tokenizer on Fashion-MNIST (a few minutes) and reports PSNR, SSIM and codebook usage; `npx ibq --help` lists the commands (`npx ibq devices --check` self-checks each backend); `npm test` runs the whole suite.');
}

try {
  main();
} catch (e) {
  if (e instanceof SetupError) {
    console.error(`[setup] error: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
