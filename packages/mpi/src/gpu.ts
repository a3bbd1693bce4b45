// Which GPU a rank of a data-parallel launch takes on webgpu: the node's local rank indexes the
// node's GPUs (by PCI address), and the choice is pinned through Mesa's Vulkan device-select
// layer (DRI_PRIME=pci-DDDD_BB_DD_F!), since Dawn cannot tell identical adapters apart. A pin the
// user or the scheduler already made is kept. Must run before the webgpu backend creates Dawn.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Variables by which a user or a scheduler already chose this process's GPU. */
const USER_PINS = ['DRI_PRIME', 'MESA_VK_DEVICE_SELECT'] as const;
/** Scheduler bindings (Slurm's --gpus-per-task, Kubernetes device plugins) that name the GPUs a process may use. */
const SCHEDULER_PINS = ['CUDA_VISIBLE_DEVICES', 'ROCR_VISIBLE_DEVICES'] as const;

export interface GpuPin {
  /** 'set': this call set `variable`; 'kept': the user's or scheduler's `variable` stands; 'none': nothing pinned. */
  action: 'set' | 'kept' | 'none';
  variable?: string;
  value?: string;
  /** The chosen GPU's PCI address (action 'set'). */
  pci?: string;
  /** Where the GPU list came from: the override IBQ_GPU_PCI_LIST or sysfs. */
  listSource?: 'IBQ_GPU_PCI_LIST' | 'sysfs';
  /** Why nothing was pinned (action 'none'). */
  reason?: string;
  /** Action 'set' without Mesa's device-select layer (absent, or NODEVICE_SELECT=1): DRI_PRIME then has no effect. */
  layerMissing?: string;
}

export class GpuPinError extends Error {}

const PCI_ADDRESS = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

/**
 * The node's GPUs by PCI address, sorted: PCI display controllers (class 0x03xxxx) that have a
 * DRM render node, so a BMC's VGA chip (modesetting only) does not count. `sysRoot` is '/' on
 * a real machine (a fake tree in tests).
 */
export function listGpus(sysRoot = '/'): string[] {
  const dir = join(sysRoot, 'sys/bus/pci/devices');
  if (!existsSync(dir)) return [];
  const gpus: string[] = [];
  for (const address of readdirSync(dir)) {
    const device = join(dir, address);
    let cls: string;
    try {
      cls = readFileSync(join(device, 'class'), 'utf8').trim().toLowerCase();
    } catch {
      continue;
    }
    if (!cls.startsWith('0x03')) continue;
    const drm = join(device, 'drm');
    if (existsSync(drm) && readdirSync(drm).some((n) => n.startsWith('renderD'))) gpus.push(address.toLowerCase());
  }
  return gpus.sort();
}

/** IBQ_GPU_PCI_LIST's addresses (comma-separated, DDDD:BB:DD.F), in the order given. */
function parsePciList(text: string): string[] {
  const list = text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s.length > 0);
  for (const a of list) {
    if (!PCI_ADDRESS.test(a)) throw new GpuPinError(`IBQ_GPU_PCI_LIST: '${a}' is not a PCI address like 0000:01:00.0`);
  }
  if (list.length === 0) throw new GpuPinError('IBQ_GPU_PCI_LIST is set but names no PCI address');
  return list;
}

/** Where the Vulkan loader looks for implicit layers (the XDG data and config folders). */
function implicitLayerDirs(env: NodeJS.ProcessEnv): string[] {
  const data = (env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':');
  const config = (env.XDG_CONFIG_DIRS || '/etc/xdg').split(':');
  return [...config, '/etc', ...data].filter((d) => d).map((d) => join(d, 'vulkan/implicit_layer.d'));
}

/** Why Mesa's device-select layer will not act on DRI_PRIME in this process, or null when it will. */
export function deviceSelectLayerMissing(env: NodeJS.ProcessEnv = process.env, sysRoot = '/'): string | null {
  if (env.NODEVICE_SELECT === '1') return 'NODEVICE_SELECT=1 disables it';
  for (const dir of implicitLayerDirs(env)) {
    const full = join(sysRoot, dir);
    if (existsSync(full) && readdirSync(full).some((f) => /device_select.*\.json$/i.test(f))) return null;
  }
  return 'no VkLayer_MESA_device_select.json among the implicit Vulkan layers (Mesa\'s Vulkan drivers install it; Debian: mesa-vulkan-drivers)';
}

/** DRI_PRIME's value selecting only the GPU at `pci` ('!': the layer exposes that device alone). */
export function driPrimeTag(pci: string): string {
  const m = PCI_ADDRESS.exec(pci);
  if (!m) throw new GpuPinError(`'${pci}' is not a PCI address like 0000:01:00.0`);
  return `pci-${m[1]}_${m[2]}_${m[3]}_${m[4]}!`;
}

/**
 * Pins the GPU of local rank `localRank` of `localSize` by setting DRI_PRIME in `env` (default
 * process.env), unless the user or the scheduler already chose one. `required` (an explicit
 * --device webgpu) makes too few GPUs an error; otherwise (auto, which may pick cpu) nothing is pinned.
 */
export function pinGpuForLocalRank(localRank: number, localSize: number, options: { env?: NodeJS.ProcessEnv; sysRoot?: string; required?: boolean } = {}): GpuPin {
  const env = options.env ?? process.env;
  for (const variable of USER_PINS) {
    const value = env[variable];
    if (value) return { action: 'kept', variable, value };
  }
  for (const variable of SCHEDULER_PINS) {
    const value = env[variable];
    // One device named: the scheduler bound this process to its GPU. Several: every rank would see them all.
    if (value && !value.includes(',')) return { action: 'kept', variable, value };
  }
  const override = env.IBQ_GPU_PCI_LIST;
  const listSource = override !== undefined ? 'IBQ_GPU_PCI_LIST' : 'sysfs';
  const gpus = override !== undefined ? parsePciList(override) : listGpus(options.sysRoot);
  if (gpus.length < localSize) {
    const found = `${gpus.length} GPU(s) in ${listSource === 'sysfs' ? 'sysfs (PCI display controllers with a render node)' : 'IBQ_GPU_PCI_LIST'}`;
    if (options.required) {
      throw new GpuPinError(`${localSize} ranks on this node need one GPU each, but there are ${found}` +
        ' (run at most that many ranks per node, list the GPUs in IBQ_GPU_PCI_LIST, or pin each rank yourself with DRI_PRIME)');
    }
    return { action: 'none', reason: `${localSize} ranks on this node but ${found}` };
  }
  if (localSize === 1 && override === undefined) return { action: 'none', reason: 'one rank on this node: the default GPU' };
  const pci = gpus[localRank];
  const value = driPrimeTag(pci);
  env.DRI_PRIME = value;
  const layerMissing = deviceSelectLayerMissing(env, options.sysRoot);
  return { action: 'set', variable: 'DRI_PRIME', value, pci, listSource, ...(layerMissing ? { layerMissing } : {}) };
}
