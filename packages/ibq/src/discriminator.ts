// The reference's PatchGAN discriminator (pix2pix NLayerDiscriminator with BatchNorm) and the
// GAN losses of its VQLPIPSWithDiscriminator (spec: training.md §2-3).

import { type Tensor, Generator, add, assign, mean, nn, relu, scale, softplus, square, sub } from '@ibq/tensor';

const { BatchNorm2d, Conv2d, LeakyReLU, Module } = nn;
type AnyModule = { forward(x: Tensor): Tensor };

/**
 * Conv 4x4 stride 2 (+ bias) -> LeakyReLU(0.2), then (n_layers-1) x [conv s2 (no bias), BN,
 * LReLU], one [conv s1, BN, LReLU], and a final conv s1 to one channel of patch logits. Children
 * are named by their index in the reference's `main` Sequential, so keys read
 * `main.0.weight`, `main.3.running_mean`, `main.11.bias`.
 */
export class NLayerDiscriminator extends Module {
  private readonly layers: AnyModule[] = [];
  constructor(inChannels = 3, ndf = 64, nLayers = 3, generator: Generator = nn.getDefaultGenerator()) {
    super();
    const main = new Sequential();
    this.module('main', main);
    const conv = (cin: number, cout: number, stride: number, bias: boolean) => {
      const c = new Conv2d(cin, cout, 4, { stride, padding: 1, bias }, { generator });
      // weights_init: conv weights N(0, 0.02); conv biases keep PyTorch's default.
      initNormal(c.weight, 0, 0.02, generator);
      return c;
    };
    const bn = (c: number) => {
      const b = new BatchNorm2d(c);
      initNormal(b.weight, 1, 0.02, generator);
      return b;
    };
    main.add(conv(inChannels, ndf, 2, true));
    main.add(new LeakyReLU(0.2));
    let mult = 1;
    for (let n = 1; n < nLayers; n++) {
      const prev = mult;
      mult = Math.min(2 ** n, 8);
      main.add(conv(ndf * prev, ndf * mult, 2, false));
      main.add(bn(ndf * mult));
      main.add(new LeakyReLU(0.2));
    }
    const prev = mult;
    mult = Math.min(2 ** nLayers, 8);
    main.add(conv(ndf * prev, ndf * mult, 1, false));
    main.add(bn(ndf * mult));
    main.add(new LeakyReLU(0.2));
    main.add(conv(ndf * mult, 1, 1, true));
    this.layers = main.items;
  }
  /** Patch logits [B, 1, H', W']. BatchNorm uses batch statistics in training mode. */
  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, m) => m.forward(h), x);
  }
}

/** Children named 0, 1, 2... in order, parameterless ones included (they keep the numbering). */
class Sequential extends Module {
  readonly items: AnyModule[] = [];
  add(m: InstanceType<typeof Module> & AnyModule): void {
    this.module(String(this.items.length), m);
    this.items.push(m);
  }
}

/** Overwrites a parameter with N(mean, std) draws from `g` (the reference's weights_init). */
function initNormal(p: Tensor, mu: number, std: number, g: Generator): void {
  const fresh = g.normal(p.shape, mu, std, p.backend);
  assign(p, fresh);
  fresh.dispose();
}

// ---------------------------------------------------------------------------------------
// Losses

/** Hinge D loss: 0.5 * (mean relu(1 - real) + mean relu(1 + fake)). */
export function hingeDLoss(real: Tensor, fake: Tensor): Tensor {
  return scale(add(mean(relu(scale(real, -1, 1))), mean(relu(scale(fake, 1, 1)))), 0.5);
}

/** LeCAM: mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2); the EMAs are one-element tensors. */
export function lecamReg(real: Tensor, fake: Tensor, emaReal: Tensor, emaFake: Tensor): Tensor {
  return add(mean(square(relu(sub(real, emaFake)))), mean(square(relu(sub(emaReal, fake)))));
}

/** Non-saturating G loss: per sample, the mean patch logit l_b; mean_b softplus(-l_b). */
export function nonSaturatingGLoss(fake: Tensor): Tensor {
  const b = fake.shape[0];
  const perSample = mean(fake.reshape([b, -1]), 1);
  return mean(softplus(scale(perSample, -1)));
}
