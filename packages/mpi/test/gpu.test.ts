// The GPU each local rank takes: enumeration from a fake sysfs tree, the override list, keeping a
// pin the user or scheduler made, and the too-few-GPUs error.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GpuPinError, deviceSelectLayerMissing, driPrimeTag, listGpus, pinGpuForLocalRank } from '../src/gpu.js';

const root = mkdtempSync(join(tmpdir(), 'ibq-sysfs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A PCI device in the fake tree: its class and, for GPUs with a driver, DRM nodes. */
function device(address: string, cls: string, drm: string[] = []): void {
  const dir = join(root, 'sys/bus/pci/devices', address);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'class'), `${cls}\n`);
  for (const node of drm) mkdirSync(join(dir, 'drm', node), { recursive: true });
}

// Two 3D controllers and a VGA GPU out of address order, a BMC's VGA chip without a render node,
// a NIC, and a display controller with no driver bound.
device('0000:c1:00.0', '0x030200', ['card2', 'renderD130']);
device('0000:41:00.0', '0x030200', ['card1', 'renderD129']);
device('0000:03:00.0', '0x030000', ['card0', 'renderD128']);
device('0000:02:00.0', '0x030000', ['card3']);
device('0000:01:00.0', '0x020000');
device('0000:e1:00.0', '0x030200');

describe('listGpus', () => {
  it('lists display controllers with a render node, sorted by PCI address', () => {
    expect(listGpus(root)).toEqual(['0000:03:00.0', '0000:41:00.0', '0000:c1:00.0']);
  });
  it('finds none where there is no PCI tree', () => {
    expect(listGpus(join(root, 'missing'))).toEqual([]);
  });
});

describe('pinGpuForLocalRank', () => {
  it('gives local rank r the r-th GPU through DRI_PRIME, exposing that GPU alone', () => {
    const picks = [0, 1, 2].map((r) => {
      const env: NodeJS.ProcessEnv = {};
      const pin = pinGpuForLocalRank(r, 3, { env, sysRoot: root, required: true });
      expect(pin).toMatchObject({ action: 'set', variable: 'DRI_PRIME', listSource: 'sysfs' });
      expect(env.DRI_PRIME).toBe(pin.value);
      return env.DRI_PRIME;
    });
    expect(picks).toEqual(['pci-0000_03_00_0!', 'pci-0000_41_00_0!', 'pci-0000_c1_00_0!']);
  });

  it('takes the GPUs from IBQ_GPU_PCI_LIST in its order, over sysfs', () => {
    const env: NodeJS.ProcessEnv = { IBQ_GPU_PCI_LIST: '0000:0a:00.0, 0000:AB:1f.7' };
    const pin = pinGpuForLocalRank(1, 2, { env, sysRoot: join(root, 'missing'), required: true });
    expect(pin).toMatchObject({ action: 'set', pci: '0000:ab:1f.7', listSource: 'IBQ_GPU_PCI_LIST' });
    expect(env.DRI_PRIME).toBe('pci-0000_ab_1f_7!');
  });

  it('rejects a malformed IBQ_GPU_PCI_LIST entry by name', () => {
    expect(() => pinGpuForLocalRank(0, 1, { env: { IBQ_GPU_PCI_LIST: '0000:0a:00.0,gpu1' }, sysRoot: root })).toThrow(/IBQ_GPU_PCI_LIST: 'gpu1' is not a PCI address/);
  });

  it("keeps the user's DRI_PRIME or MESA_VK_DEVICE_SELECT", () => {
    for (const [variable, value] of [['DRI_PRIME', 'pci-0000_41_00_0!'], ['MESA_VK_DEVICE_SELECT', '10de:2330!']]) {
      const env: NodeJS.ProcessEnv = { [variable]: value, IBQ_GPU_PCI_LIST: '0000:0a:00.0,0000:0b:00.0' };
      expect(pinGpuForLocalRank(1, 2, { env, sysRoot: root, required: true })).toEqual({ action: 'kept', variable, value });
      expect(env).toEqual({ [variable]: value, IBQ_GPU_PCI_LIST: '0000:0a:00.0,0000:0b:00.0' });
    }
  });

  it("keeps a scheduler's binding to one GPU, but not a list every rank sees", () => {
    const one: NodeJS.ProcessEnv = { CUDA_VISIBLE_DEVICES: '3' };
    expect(pinGpuForLocalRank(1, 2, { env: one, sysRoot: root, required: true })).toEqual({ action: 'kept', variable: 'CUDA_VISIBLE_DEVICES', value: '3' });
    expect(one.DRI_PRIME).toBeUndefined();
    const all: NodeJS.ProcessEnv = { ROCR_VISIBLE_DEVICES: '0,1,2' };
    expect(pinGpuForLocalRank(2, 3, { env: all, sysRoot: root, required: true })).toMatchObject({ action: 'set', pci: '0000:c1:00.0' });
  });

  it('names the counts when the node has fewer GPUs than local ranks (webgpu asked for)', () => {
    expect(() => pinGpuForLocalRank(0, 4, { env: {}, sysRoot: root, required: true })).toThrow(GpuPinError);
    expect(() => pinGpuForLocalRank(0, 4, { env: {}, sysRoot: root, required: true })).toThrow(/4 ranks on this node need one GPU each, but there are 3 GPU\(s\) in sysfs/);
    expect(() => pinGpuForLocalRank(0, 2, { env: { IBQ_GPU_PCI_LIST: '0000:0a:00.0' }, required: true })).toThrow(/2 ranks .* 1 GPU\(s\) in IBQ_GPU_PCI_LIST/);
  });

  it('pins nothing under --device auto when GPUs are too few (auto may pick cpu), nor for one rank per node', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(pinGpuForLocalRank(0, 4, { env, sysRoot: root })).toMatchObject({ action: 'none', reason: expect.stringMatching(/4 ranks on this node but 3 GPU/) });
    expect(pinGpuForLocalRank(0, 1, { env, sysRoot: root })).toMatchObject({ action: 'none' });
    expect(env).toEqual({});
  });

  it("warns that the pin has no effect without Mesa's device-select layer", () => {
    const layerRoot = mkdtempSync(join(tmpdir(), 'ibq-layers-'));
    try {
      expect(deviceSelectLayerMissing({}, layerRoot)).toMatch(/no VkLayer_MESA_device_select\.json/);
      expect(pinGpuForLocalRank(0, 3, { env: {}, sysRoot: root })).toMatchObject({ action: 'set', layerMissing: expect.stringMatching(/device_select/) });
      mkdirSync(join(layerRoot, 'usr/share/vulkan/implicit_layer.d'), { recursive: true });
      writeFileSync(join(layerRoot, 'usr/share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json'), '{}');
      expect(deviceSelectLayerMissing({}, layerRoot)).toBeNull();
      expect(deviceSelectLayerMissing({ XDG_DATA_DIRS: '/opt/share' }, layerRoot)).toMatch(/no VkLayer/);
      expect(deviceSelectLayerMissing({ NODEVICE_SELECT: '1' }, layerRoot)).toMatch(/NODEVICE_SELECT=1/);
    } finally {
      rmSync(layerRoot, { recursive: true, force: true });
    }
  });

  it('writes the device-select layer tag DDDD_BB_DD_F', () => {
    expect(driPrimeTag('0000:c1:00.0')).toBe('pci-0000_c1_00_0!');
    expect(() => driPrimeTag('c1:00.0')).toThrow(/not a PCI address/);
  });
});
