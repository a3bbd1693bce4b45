import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '@ibq/kernels';
import { setBackend } from '@ibq/tensor';
import { ConfigError, IBQTokenizer, latentSize, loadConfig, parseConfig } from '../src/index.js';

// The shape of the reference's configs/IBQ/gpu/imagenet_ibqgan_*.yaml (trainer and data
// sections trimmed to what matters), written the way those files write values.
const official = (nEmbed: number) => `seed_everything: true
trainer:
  accelerator: gpu
  strategy: ddp_find_unused_parameters_true
  devices: 8
  num_nodes: 8
  precision: 16-mixed
  max_epochs: 330
model:
  class_path: src.IBQ.models.ibqgan.IBQ
  init_args:
    ddconfig:
      double_z: False
      z_channels: 256
      resolution: 256
      in_channels: 3
      out_ch: 3
      ch: 128
      ch_mult: [ 1,1,2,2,4]  # num_down = len(ch_mult)-1
      num_res_blocks: 4 #not adopt from showo
      attn_resolutions: [16] #not adopt from showo
      dropout: 0.0

    lossconfig:
      target: src.IBQ.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_conditional: False
        disc_in_channels: 3
        disc_start: 0 # from 0 epoch
        disc_weight: 0.4 # default 0.4
        quant_loss_weight: 1.0 # default 1.0
        entropy_loss_weight: 0.05 # default 0.1
        gen_loss_weight: 0.1
        lecam_loss_weight: 0.05

    n_embed: ${nEmbed}
    embed_dim: 256
    learning_rate: 1e-4
    l2_normalize: False
    use_entropy_loss: True
    sample_minimization_weight: 1.0
    batch_maximization_weight: 1.0
    entropy_temperature: 0.01 # default 0.01
    beta: 0.25
    use_ema: True
    resume_lr:
    lr_drop_epoch: [250, 300]

data:
  class_path: main.DataModuleFromConfig
  init_args:
    batch_size: 4
    num_workers: 16
ckpt_path: null # to resume`;

describe('configs in the official schema', () => {
  it('parses every field the model and trainer use', () => {
    const c = parseConfig(official(16384));
    expect(c.ddconfig).toEqual({
      double_z: false, z_channels: 256, resolution: 256, in_channels: 3, out_ch: 3, ch: 128,
      ch_mult: [1, 1, 2, 2, 4], num_res_blocks: 4, attn_resolutions: [16], dropout: 0,
    });
    expect(c.n_embed).toBe(16384);
    expect(c.learning_rate).toBe(1e-4);
    expect(c.lr_drop_epoch).toEqual([250, 300]);
    expect(c.lossconfig).toMatchObject({ disc_start: 0, entropy_loss_weight: 0.05, gen_loss_weight: 0.1, lecam_loss_weight: 0.05, quant_loss_weight: 1 });
    expect(c.use_entropy_loss).toBe(true);
    expect(c.entropy_temperature).toBe(0.01);
    expect(c.batch_size).toBe(4);
    expect(c.max_epochs).toBe(330);
    expect(c.precision).toBe('16-mixed');
    expect(latentSize(c)).toBe(16);
  });

  it('errors name the file and the key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ibq-cfg-'));
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, official(1024).replace('z_channels: 256', 'z_channels: lots'));
    expect(() => loadConfig(f)).toThrow(`${f}: 'model.init_args.ddconfig.z_channels' must be a number, got "lots"`);
    expect(() => loadConfig(join(dir, 'absent.yaml'))).toThrow(/absent\.yaml: cannot read: ENOENT/);
    expect(() => parseConfig('model: [', 'x.yaml')).toThrow(ConfigError);
    expect(() => parseConfig('model:\n  init_args: {}\n', 'y.yaml')).toThrow("y.yaml: missing 'model.init_args.ddconfig'");
  });

  it('the official 1024 architecture has the spec\'s parameter counts and key names', () => {
    setBackend(new ReferenceBackend());
    const model = new IBQTokenizer(parseConfig(official(1024)));
    const count = (prefix: string) => model.namedParameters().filter(([n]) => n.startsWith(prefix)).reduce((a, [, p]) => a + p.size, 0);
    expect(count('encoder.')).toBe(46_752_256);
    expect(count('decoder.')).toBe(59_903_875);
    expect(count('')).toBe(106_787_715 + 1024 * 256);
    const keys = [...model.stateDict().keys()];
    expect(keys.filter((k) => k.startsWith('encoder.')).length).toBe(244);
    expect(keys.filter((k) => k.startsWith('decoder.')).length).toBe(294);
    expect(keys.length).toBe(543);
    expect(keys).toContain('encoder.down.4.attn.3.proj_out.bias');
    expect(keys).toContain('decoder.up.4.attn.4.q.weight');
    expect(keys).toContain('decoder.up.3.block.0.nin_shortcut.weight');
    expect(keys).not.toContain('encoder.down.4.downsample.conv.weight');
    expect(keys).not.toContain('encoder.down.3.attn.0.q.weight');
    model.dispose();
  });
});
