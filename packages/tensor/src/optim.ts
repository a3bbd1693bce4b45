// Optimizers as fused device kernels (adam_update, ema_update), gradient clipping by global
// norm, and the learning-rate schedules of the reference's two trainers.

import { Tensor, apply, backward, dispose, keep, noGrad, tidy } from './engine.js';
import { add, div, full, minimum, scale, sqrt, square, sum, zeros } from './ops.js';

export interface AdamOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** AdamW: decay the weights directly (param *= 1 - lr*wd) instead of adding wd*param to the gradient. */
  decoupled?: boolean;
  /**
   * Parameters kept out of weight decay (the usual second group: norms and biases). Leave it
   * empty to decay every parameter, as the reference's AR trainer ends up doing (it writes the
   * scheduled weight decay into every group).
   */
  noDecay?: readonly Tensor[];
}

export interface AdamState {
  step: number;
  lr: number;
  weightDecay: number;
  /** First and second moments per parameter, in parameter order. */
  m: Tensor[];
  v: Tensor[];
}

/**
 * torch.optim.Adam / AdamW over one parameter group. `lr` and `weightDecay` are public so a
 * schedule can set them before each step (the reference writes weight decay into every group).
 */
export class Adam {
  lr: number;
  weightDecay: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly decoupled: boolean;
  private readonly noDecay: ReadonlySet<Tensor>;
  stepCount = 0;
  private readonly m: Tensor[];
  private readonly v: Tensor[];

  constructor(readonly params: Tensor[], o: AdamOptions) {
    this.lr = o.lr;
    this.betas = o.betas ?? [0.9, 0.999];
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0;
    this.decoupled = o.decoupled ?? false;
    this.noDecay = new Set(o.noDecay ?? []);
    this.m = params.map((p) => noGrad(() => keep(zeros(p.shape, { backend: p.backend }))));
    this.v = params.map((p) => noGrad(() => keep(zeros(p.shape, { backend: p.backend }))));
  }

  /** One update of every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    noGrad(() => {
      this.params.forEach((p, i) => {
        if (!p.grad) return;
        apply('adam_update', [p, p.grad, this.m[i], this.v[i]], {
          lr: this.lr,
          beta1: this.betas[0],
          beta2: this.betas[1],
          eps: this.eps,
          weightDecay: this.noDecay.has(p) ? 0 : this.weightDecay,
          decoupled: this.decoupled,
          step: this.stepCount,
        });
      });
    });
  }

  /** Counts a step without gradients (the reference steps with zero grads: weights and moments stay). */
  skipStep(): void {
    this.stepCount++;
  }

  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** The moments and counters, for checkpoints. */
  state(): AdamState {
    return { step: this.stepCount, lr: this.lr, weightDecay: this.weightDecay, m: this.m, v: this.v };
  }

  dispose(): void {
    dispose([this.m, this.v]);
  }
}

/**
 * Scales all gradients so that their global L2 norm is at most maxNorm (torch's
 * clip_grad_norm_: coefficient maxNorm/(norm+1e-6), capped at 1), on the device with no
 * readback. Returns the norm before clipping as a one-element tensor.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => !!g);
  if (grads.length === 0) throw new Error('clipGradNorm: no parameter has a gradient');
  return noGrad(() => {
    const norm = keep(tidy(() => sqrt(grads.map((g) => sum(square(g))).reduce((a, b) => add(a, b)))));
    const coef = tidy(() => minimum(div(full([1], maxNorm), add(norm, 1e-6)), 1));
    for (const p of params) {
      if (!p.grad) continue;
      const scaled = keep(apply('mul', [p.grad, coef])[0]);
      p.grad.dispose();
      p.grad = scaled;
    }
    coef.dispose();
    return norm;
  });
}

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  /** Clean optimizer steps in a row before the scale grows. */
  growthInterval?: number;
}

export interface GradScalerState {
  scale: number;
  growthTracker: number;
}

/**
 * Dynamic loss scaling for f16 mixed precision, as torch.cuda.amp.GradScaler (same defaults):
 * backward() seeds the gradient with `scale` so small f16 gradients do not flush to zero;
 * step() divides the gradients by it and skips the update when any is inf or NaN; update()
 * then halves the scale, or doubles it after `growthInterval` clean steps in a row. One scaler
 * may serve several optimizers: update() judges every step() since the last update().
 */
export class GradScaler {
  scale: number;
  growthTracker = 0;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  private foundInf = false;

  constructor(o: GradScalerOptions = {}) {
    this.scale = o.initScale ?? 65536;
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
  }

  /** backward(loss x scale), without materialising the scaled loss. */
  backward(loss: Tensor): void {
    const seed = noGrad(() => full(loss.shape, this.scale, { backend: loss.backend, dtype: loss.dtype }));
    try {
      backward(loss, seed);
    } finally {
      seed.dispose();
    }
  }

  /**
   * Unscales the optimizer's gradients and steps it unless one is inf or NaN (one readback).
   * Returns whether it stepped.
   */
  async step(opt: Adam): Promise<boolean> {
    const finite = await this.unscale(opt.params);
    if (finite) opt.step();
    else this.foundInf = true;
    return finite;
  }

  /** Divides every gradient by the scale in place; resolves to whether all of them are finite. */
  async unscale(params: readonly Tensor[]): Promise<boolean> {
    const withGrad = params.filter((p) => p.grad);
    if (withGrad.length === 0) return true;
    const check = noGrad(() => {
      let acc: Tensor | null = null;
      for (const p of withGrad) {
        const g = keep(scale(p.grad!, 1 / this.scale));
        p.grad!.dispose();
        p.grad = g;
        // One inf or NaN makes the sum inf or NaN; finite unscaled gradients cannot sum past 3e38.
        const s = sum(g);
        if (acc) {
          const next: Tensor = add(acc, s);
          acc.dispose();
          s.dispose();
          acc = next;
        } else acc = s;
      }
      return acc!;
    });
    const v = await check.item();
    check.dispose();
    return Number.isFinite(v);
  }

  /** Adjusts the scale after the steps since the last update. */
  update(): void {
    if (this.foundInf) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker === this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
    this.foundInf = false;
  }

  state(): GradScalerState {
    return { scale: this.scale, growthTracker: this.growthTracker };
  }

  loadState(s: GradScalerState): void {
    if (!(s.scale > 0) || !Number.isInteger(s.growthTracker)) throw new Error(`GradScaler: bad state ${JSON.stringify(s)}`);
    this.scale = s.scale;
    this.growthTracker = s.growthTracker;
  }
}

/** Exponential moving average of parameters (shadow -= (1-decay)(shadow - param)). */
export class EMA {
  readonly shadow: Map<string, Tensor>;
  constructor(private readonly named: [string, Tensor][], readonly decay: number) {
    this.shadow = new Map(named.map(([n, p]) => [n, noGrad(() => keep(apply('cast', [p], { dtype: p.dtype })[0]))]));
  }
  update(): void {
    noGrad(() => {
      for (const [n, p] of this.named) apply('ema_update', [this.shadow.get(n)!, p], { decay: this.decay });
    });
  }
  dispose(): void {
    dispose([...this.shadow.values()]);
  }
}

// ---------------------------------------------------------------------------------------
// Learning-rate schedules

/** Constant LR with multiplicative drops: the tokenizer trainer's schedule (after epoch e, if e+1 is listed). */
export function lrAfterDrops(baseLr: number, epochsDone: number, dropEpochs: number[], rate = 0.1): number {
  return baseLr * Math.pow(rate, dropEpochs.filter((e) => epochsDone >= e).length);
}

export interface WarmupPlateauLinear {
  peak: number;
  totalSteps: number;
  warmupSteps: number;
  /** Warm-up starts at this fraction of the peak (0.005 in the reference). */
  warmupStart: number;
  /** Final LR as a fraction of the peak (wpe). */
  end: number;
  /** Fraction of the post-warm-up steps held at the peak (0.05). */
  plateau?: number;
}

/** The AR trainer's per-step LR: linear warm-up, a plateau, then linear decay to end*peak. */
export function warmupPlateauLinear(s: WarmupPlateauLinear, it: number): number {
  const plateau = s.plateau ?? 0.05;
  let f: number;
  if (it < s.warmupSteps) f = s.warmupStart + ((1 - s.warmupStart) * it) / s.warmupSteps;
  else {
    const u = (it - s.warmupSteps) / Math.max(1, s.totalSteps - 1 - s.warmupSteps);
    f = u < plateau ? 1 : s.end + ((1 - s.end) * (1 - u)) / (1 - plateau);
  }
  return s.peak * f;
}
