// Dawn's native warnings at adapter creation ("maxDynamicUniformBuffersPerPipelineLayout
// artificially reduced ...", printed by its Vulkan backend with fprintf(stderr)) mean nothing
// to a user. Node cannot filter a native library's writes, so for the duration of one call fd 2
// is pointed at /dev/null and then back at the same terminal or pipe. IBQ_DAWN_VERBOSE=1 keeps
// them. Only on Linux, and only when stderr is a terminal or a pipe (what a person sees, also
// through `| less`): a regular file is left alone, since reopening it could not keep a shared
// file offset, and a socket (a parent's child_process pipe) cannot be reopened at all.

import { closeSync, fstatSync, openSync } from 'node:fs';

export async function withNativeStderrQuiet<T>(fn: () => Promise<T>): Promise<T> {
  if (process.platform !== 'linux' || process.env.IBQ_DAWN_VERBOSE === '1') return fn();
  let saved: number;
  try {
    const st = fstatSync(2);
    if (!st.isCharacterDevice() && !st.isFIFO()) return fn();
    saved = openSync('/proc/self/fd/2', 'w');
  } catch {
    return fn();
  }
  closeSync(2);
  // POSIX hands out the lowest free descriptor: /dev/null lands on fd 2, and so does the restore.
  const devNull = openSync('/dev/null', 'w');
  try {
    return await fn();
  } finally {
    closeSync(devNull);
    const back = openSync(`/proc/self/fd/${saved}`, 'w');
    closeSync(saved);
    if (back !== 2) closeSync(back); // fd 2 was taken meanwhile (cannot happen single-threaded)
  }
}
