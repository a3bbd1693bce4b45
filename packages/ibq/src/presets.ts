// Built-in configs, in the official schema, for runs that need no file: the first-run demo.

import { type IBQConfig, parseConfig } from './config.js';

/**
 * The demo tokenizer: Fashion-MNIST at 32x32 (3 channels), 8x8 tokens, 1024 codes, small
 * enough to train for a few minutes on two CPU cores. The loss is the reference's without the
 * GAN (disc_start beyond the demo's length) and without LPIPS (no VGG16 weights ship here);
 * no EMA, since a short run's EMA would still sit near the initial weights.
 */
export const DEMO_CONFIG_YAML = `# ibq demo: Fashion-MNIST 32x32, 1024 codes (official schema)
model:
  class_path: src.IBQ.models.ibqgan.IBQ
  init_args:
    ddconfig:
      double_z: False
      z_channels: 64
      resolution: 32
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 1, 2]
      num_res_blocks: 1
      attn_resolutions: []
      dropout: 0.0
    lossconfig:
      target: src.IBQ.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_conditional: False
        disc_in_channels: 3
        disc_start: 1000000
        disc_weight: 0.4
        quant_loss_weight: 1.0
        entropy_loss_weight: 0.05
        gen_loss_weight: 0.1
        lecam_loss_weight: 0.05
    n_embed: 1024
    embed_dim: 64
    learning_rate: 1e-3
    l2_normalize: False
    use_entropy_loss: True
    sample_minimization_weight: 1.0
    batch_maximization_weight: 1.0
    entropy_temperature: 0.01
    beta: 0.25
    use_ema: False
    lr_drop_epoch: []
data:
  init_args:
    batch_size: 16
`;

export function demoConfig(): IBQConfig {
  return parseConfig(DEMO_CONFIG_YAML, '<demo config>');
}
