// The IBQ tokenizer: the taming VQGAN Encoder/Decoder, quant_conv / post_quant_conv and the
// IndexPropagationQuantizer, with the official parameter names (spec: shared/spec/tokenizer.md).

import { type Tensor, add, apply, nn, pad, permute, tidy, upsampleNearest2x } from '@ibq/tensor';
import type { DDConfig, IBQConfig } from './config.js';

const { Conv2d, GroupNorm, ModuleList, Module, scaledDotProductAttention } = nn;
type Module = InstanceType<typeof Module>;

/** GroupNorm(32, eps 1e-6), as the reference's Normalize(). */
const normalize = (c: number) => new GroupNorm(32, c, 1e-6);

export class ResnetBlock extends Module {
  readonly norm1;
  readonly conv1;
  readonly norm2;
  readonly conv2;
  readonly nin_shortcut: InstanceType<typeof Conv2d> | null;
  constructor(readonly inChannels: number, readonly outChannels: number) {
    super();
    this.norm1 = this.module('norm1', normalize(inChannels));
    this.conv1 = this.module('conv1', new Conv2d(inChannels, outChannels, 3, { padding: 1 }));
    this.norm2 = this.module('norm2', normalize(outChannels));
    this.conv2 = this.module('conv2', new Conv2d(outChannels, outChannels, 3, { padding: 1 }));
    // The 1x1 `nin_shortcut` (never the 3x3 conv_shortcut variant) when widths differ.
    this.nin_shortcut = inChannels !== outChannels ? this.module('nin_shortcut', new Conv2d(inChannels, outChannels, 1)) : null;
  }
  forward(x: Tensor): Tensor {
    let h = this.conv1.forward(this.norm1.forwardSilu(x));
    // Dropout is 0.0 in every IBQ config: a no-op.
    h = this.conv2.forward(this.norm2.forwardSilu(h));
    const skip = this.nin_shortcut ? this.nin_shortcut.forward(x) : x;
    return add(skip, h);
  }
}

/** Single-head spatial self-attention with a residual, scores scaled by C^-1/2. */
export class AttnBlock extends Module {
  readonly norm;
  readonly q;
  readonly k;
  readonly v;
  readonly proj_out;
  constructor(readonly channels: number) {
    super();
    this.norm = this.module('norm', normalize(channels));
    this.q = this.module('q', new Conv2d(channels, channels, 1));
    this.k = this.module('k', new Conv2d(channels, channels, 1));
    this.v = this.module('v', new Conv2d(channels, channels, 1));
    this.proj_out = this.module('proj_out', new Conv2d(channels, channels, 1));
  }
  forward(x: Tensor): Tensor {
    const [b, c, hh, ww] = x.shape;
    const h = this.norm.forward(x);
    // [B, C, H, W] -> [B, 1, HW, C]: one head over the HW positions.
    const seq = (t: Tensor) => permute(t.reshape([b, c, hh * ww]), [0, 2, 1]).reshape([b, 1, hh * ww, c]);
    const o = scaledDotProductAttention(seq(this.q.forward(h)), seq(this.k.forward(h)), seq(this.v.forward(h)), { scale: Math.pow(c, -0.5) });
    const back = permute(o.reshape([b, hh * ww, c]), [0, 2, 1]).reshape([b, c, hh, ww]);
    return add(x, this.proj_out.forward(back));
  }
}

/** Zero pad 0 left, 1 right, 0 top, 1 bottom, then a 3x3 stride-2 conv with padding 0. */
export class Downsample extends Module {
  readonly conv;
  constructor(channels: number) {
    super();
    this.conv = this.module('conv', new Conv2d(channels, channels, 3, { stride: 2, padding: 0 }));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(pad(x, [[0, 0], [0, 0], [0, 1], [0, 1]]));
  }
}

export class Upsample extends Module {
  readonly conv;
  constructor(channels: number) {
    super();
    this.conv = this.module('conv', new Conv2d(channels, channels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(upsampleNearest2x(x));
  }
}

class Level extends Module {
  readonly block = this.module('block', new ModuleList<ResnetBlock>());
  readonly attn = this.module('attn', new ModuleList<AttnBlock>());
  sample: Downsample | Upsample | null = null;
  setSample(name: 'downsample' | 'upsample', m: Downsample | Upsample): void {
    this.sample = this.module(name, m);
  }
  /** Res blocks, each followed by its attention block where the level has attention. */
  forward(h: Tensor): Tensor {
    for (let i = 0; i < this.block.length; i++) {
      h = this.block.at(i).forward(h);
      if (this.attn.length > 0) h = this.attn.at(i).forward(h);
    }
    return this.sample ? this.sample.forward(h) : h;
  }
}

class Mid extends Module {
  readonly block_1;
  readonly attn_1;
  readonly block_2;
  constructor(c: number) {
    super();
    this.block_1 = this.module('block_1', new ResnetBlock(c, c));
    this.attn_1 = this.module('attn_1', new AttnBlock(c));
    this.block_2 = this.module('block_2', new ResnetBlock(c, c));
  }
  forward(h: Tensor): Tensor {
    return this.block_2.forward(this.attn_1.forward(this.block_1.forward(h)));
  }
}

export class Encoder extends Module {
  readonly conv_in;
  readonly down;
  readonly mid;
  readonly norm_out;
  readonly conv_out;
  constructor(readonly cfg: DDConfig) {
    super();
    const { ch, ch_mult, num_res_blocks, attn_resolutions, resolution } = cfg;
    this.conv_in = this.module('conv_in', new Conv2d(cfg.in_channels, ch, 3, { padding: 1 }));
    this.down = this.module('down', new ModuleList<Level>());
    const inMult = [1, ...ch_mult];
    let res = resolution;
    let blockIn = ch;
    for (let i = 0; i < ch_mult.length; i++) {
      const level = new Level();
      blockIn = ch * inMult[i];
      const blockOut = ch * ch_mult[i];
      for (let j = 0; j < num_res_blocks; j++) {
        level.block.push(new ResnetBlock(blockIn, blockOut));
        blockIn = blockOut;
        if (attn_resolutions.includes(res)) level.attn.push(new AttnBlock(blockIn));
      }
      if (i !== ch_mult.length - 1) {
        level.setSample('downsample', new Downsample(blockIn));
        res = Math.floor(res / 2);
      }
      this.down.push(level);
    }
    this.mid = this.module('mid', new Mid(blockIn));
    this.norm_out = this.module('norm_out', normalize(blockIn));
    this.conv_out = this.module('conv_out', new Conv2d(blockIn, cfg.double_z ? 2 * cfg.z_channels : cfg.z_channels, 3, { padding: 1 }));
  }
  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const level of this.down.items) h = level.forward(h);
    h = this.mid.forward(h);
    return this.conv_out.forward(this.norm_out.forwardSilu(h));
  }
}

export class Decoder extends Module {
  readonly conv_in;
  readonly mid;
  readonly up;
  readonly norm_out;
  readonly conv_out;
  constructor(readonly cfg: DDConfig) {
    super();
    const { ch, ch_mult, num_res_blocks, attn_resolutions, resolution } = cfg;
    const n = ch_mult.length;
    let blockIn = ch * ch_mult[n - 1];
    let res = Math.floor(resolution / 2 ** (n - 1));
    this.conv_in = this.module('conv_in', new Conv2d(cfg.z_channels, blockIn, 3, { padding: 1 }));
    this.mid = this.module('mid', new Mid(blockIn));
    this.up = this.module('up', new ModuleList<Level>());
    // Built from the lowest resolution up and prepended in the reference: up.0 is the full-resolution level.
    const levels: Level[] = new Array(n);
    for (let i = n - 1; i >= 0; i--) {
      const level = new Level();
      const blockOut = ch * ch_mult[i];
      for (let j = 0; j < num_res_blocks + 1; j++) {
        level.block.push(new ResnetBlock(blockIn, blockOut));
        blockIn = blockOut;
        if (attn_resolutions.includes(res)) level.attn.push(new AttnBlock(blockIn));
      }
      if (i !== 0) {
        level.setSample('upsample', new Upsample(blockIn));
        res *= 2;
      }
      levels[i] = level;
    }
    levels.forEach((l) => this.up.push(l));
    this.norm_out = this.module('norm_out', normalize(blockIn));
    this.conv_out = this.module('conv_out', new Conv2d(blockIn, cfg.out_ch, 3, { padding: 1 }));
  }
  forward(z: Tensor): Tensor {
    let h = this.mid.forward(this.conv_in.forward(z));
    for (let i = this.up.length - 1; i >= 0; i--) h = this.up.at(i).forward(h);
    return this.conv_out.forward(this.norm_out.forwardSilu(h));
  }
}

/** The codebook (`quantize.embedding.weight` [n_embed, embed_dim]) and the fused quantizer op. */
export class IndexPropagationQuantizer extends Module {
  readonly embedding;
  constructor(readonly nEmbed: number, readonly embedDim: number, readonly beta = 0.25, readonly temperature = 0.01) {
    super();
    this.embedding = this.module('embedding', new nn.Embedding(nEmbed, embedDim));
  }

  /**
   * z [B, D, H, W] -> z_q [B, D, H, W] (forward value E[index], straight-through gradient to
   * every codebook row), indices [B*H*W] in (b, h, w) order, and the losses
   * [quant_loss, sample_entropy, avg_entropy, entropy_loss] as a [4] tensor.
   */
  forward(z: Tensor, chunk?: number): { zq: Tensor; indices: Tensor; losses: Tensor } {
    const [b, d, h, w] = z.shape;
    const tokens = permute(z, [0, 2, 3, 1]).reshape([b * h * w, d]);
    const [indices, zq, losses, ...saved] = apply('ibq_quantize', [tokens, this.embedding.weight], {
      beta: this.beta,
      temperature: this.temperature,
      ...(chunk ? { chunk } : {}),
    });
    for (const t of saved) t.dispose();
    return { zq: permute(zq.reshape([b, h, w, d]), [0, 3, 1, 2]), indices, losses };
  }

  /** Codebook rows for indices, as [B, D, H, W] (the reference's get_codebook_entry). */
  lookup(indices: Tensor, b: number, h: number, w: number): Tensor {
    const rows = this.embedding.forward(indices.reshape([b * h * w]));
    return permute(rows.reshape([b, h, w, this.embedDim]), [0, 3, 1, 2]);
  }
}

/**
 * encoder -> quant_conv -> quantize -> post_quant_conv -> decoder. Each public method runs in
 * its own scope: intermediates are freed (the tape keeps what backward needs), so callers only
 * dispose what they get back.
 */
export class IBQTokenizer extends Module {
  readonly encoder;
  readonly decoder;
  readonly quantize;
  readonly quant_conv;
  readonly post_quant_conv;
  constructor(readonly config: IBQConfig) {
    super();
    const dd = config.ddconfig;
    this.encoder = this.module('encoder', new Encoder(dd));
    this.decoder = this.module('decoder', new Decoder(dd));
    this.quantize = this.module('quantize', new IndexPropagationQuantizer(config.n_embed, config.embed_dim, config.beta, config.entropy_temperature));
    this.quant_conv = this.module('quant_conv', new Conv2d(dd.z_channels, config.embed_dim, 1));
    this.post_quant_conv = this.module('post_quant_conv', new Conv2d(config.embed_dim, dd.z_channels, 1));
  }

  /** Pre-quantization latents z = quant_conv(encoder(x)). */
  encodeLatents(x: Tensor): Tensor {
    return tidy(() => this.quant_conv.forward(this.encoder.forward(x)));
  }

  encode(x: Tensor, chunk?: number): { zq: Tensor; indices: Tensor; losses: Tensor; z: Tensor } {
    return tidy(() => {
      const z = this.encodeLatents(x);
      return { ...this.quantize.forward(z, chunk), z };
    });
  }

  decode(zq: Tensor): Tensor {
    return tidy(() => this.decoder.forward(this.post_quant_conv.forward(zq)));
  }

  /** Token grid [B, H, W] (i32) -> images [B, 3, R, R] (not clamped). */
  decodeIndices(indices: Tensor): Tensor {
    const [b, h, w] = indices.shape;
    return tidy(() => this.decode(this.quantize.lookup(indices, b, h, w)));
  }

  forward(x: Tensor, chunk?: number): { xrec: Tensor; indices: Tensor; losses: Tensor } {
    return tidy(() => {
      const { zq, indices, losses } = this.encode(x, chunk);
      return { xrec: this.decode(zq), indices, losses };
    });
  }
}
