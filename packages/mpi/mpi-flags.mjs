// The compile and link flags of the system's MPI, read from its C compiler wrapper ($MPICC,
// else mpicc): MPICH and its derivatives (Intel MPI, Cray, MVAPICH) answer `-show`, Open MPI
// `--showme`. binding.gyp runs `node mpi-flags.mjs include|defines|libs`; build.mjs imports it.
// Linking through the wrapper's flags is what makes the addon use a cluster's own MPI build
// (and with it InfiniBand, EFA or Slingshot).

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The wrapper command: $MPICC, else mpicc. */
export const mpiccCommand = () => process.env.MPICC || 'mpicc';

/**
 * The wrapper's full command line, split into words, or null when there is no MPI wrapper.
 * @returns {string[] | null}
 */
export function wrapperLine() {
  for (const flag of ['-show', '--showme']) {
    try {
      const out = execFileSync(mpiccCommand(), [flag], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      if (out) return out.split(/\s+/);
    } catch {
      // not this flavour, or no wrapper at all
    }
  }
  return null;
}

/**
 * Include directories, defines and link flags (with an rpath for each library folder).
 * @returns {{ include: string[]; defines: string[]; libs: string[] } | null}
 */
export function mpiFlags() {
  const words = wrapperLine();
  if (!words) return null;
  const include = [], defines = [], libs = [];
  for (const w of words.slice(1)) {
    if (w.startsWith('-I')) include.push(w.slice(2));
    else if (w.startsWith('-D')) defines.push(w.slice(2));
    else if (w.startsWith('-L')) libs.push(w, `-Wl,-rpath,${w.slice(2)}`);
    else if (w.startsWith('-l') || w.startsWith('-Wl,') || w.startsWith('-pthread')) libs.push(w);
  }
  return { include, defines, libs };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const what = process.argv[2];
  const flags = mpiFlags();
  if (!flags) {
    console.error(`mpi-flags: no MPI compiler wrapper ('${mpiccCommand()} -show' failed): install MPI (apt-get install mpich libmpich-dev) or set MPICC`);
    process.exit(1);
  }
  if (!(what === 'include' || what === 'defines' || what === 'libs')) {
    console.error('usage: node mpi-flags.mjs include|defines|libs');
    process.exit(2);
  }
  console.log(flags[what].join(' '));
}
