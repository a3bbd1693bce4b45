// Tokenizer configs in the reference's YAML schema (configs/IBQ/*/imagenet_ibqgan_*.yaml):
// the official files load unchanged; `model.init_args` holds the model, `data` and `trainer`
// the run. Our small CPU configs use the same schema.

import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

export interface DDConfig {
  double_z: boolean;
  z_channels: number;
  resolution: number;
  in_channels: number;
  out_ch: number;
  ch: number;
  ch_mult: number[];
  num_res_blocks: number;
  attn_resolutions: number[];
  dropout: number;
}

export interface LossConfig {
  disc_start: number;
  disc_weight: number;
  quant_loss_weight: number;
  entropy_loss_weight: number;
  gen_loss_weight: number;
  lecam_loss_weight: number;
  disc_in_channels: number;
  perceptual_weight: number;
  /** Discriminator depth and width (NLayerDiscriminator defaults: 3 and 64). */
  disc_num_layers: number;
  disc_ndf: number;
}

export interface IBQConfig {
  ddconfig: DDConfig;
  lossconfig: LossConfig;
  n_embed: number;
  embed_dim: number;
  learning_rate: number;
  beta: number;
  use_entropy_loss: boolean;
  entropy_temperature: number;
  sample_minimization_weight: number;
  batch_maximization_weight: number;
  l2_normalize: boolean;
  use_ema: boolean;
  lr_drop_epoch: number[];
  lr_drop_rate: number;
  /** data.init_args: batch size and the training resolution. */
  batch_size: number;
  /** trainer: epochs and precision as written. */
  max_epochs: number | null;
  precision: string | null;
  /** The model class named by the file (the pretrain configs name the wrong one: see spec). */
  class_path: string;
}

export class ConfigError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Obj = Record<string, unknown>;

function get(o: unknown, path: string[], file: string): unknown {
  let cur: unknown = o;
  for (const k of path) {
    if (!cur || typeof cur !== 'object') throw new ConfigError(file, `missing '${path.join('.')}'`);
    cur = (cur as Obj)[k];
  }
  return cur;
}

function num(v: unknown, key: string, file: string, dflt?: number): number {
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    throw new ConfigError(file, `missing '${key}'`);
  }
  // YAML 1.2 reads `1e-4` as a string; the reference's files write it that way.
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || Number.isNaN(n)) throw new ConfigError(file, `'${key}' must be a number, got ${JSON.stringify(v)}`);
  return n;
}

function bool(v: unknown, key: string, file: string, dflt: boolean): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new ConfigError(file, `'${key}' must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function nums(v: unknown, key: string, file: string, dflt?: number[]): number[] {
  if (v === undefined || v === null) {
    if (dflt) return dflt;
    throw new ConfigError(file, `missing '${key}'`);
  }
  if (!Array.isArray(v)) throw new ConfigError(file, `'${key}' must be a list of numbers`);
  return v.map((x, i) => num(x, `${key}[${i}]`, file));
}

/** Parses a config from YAML text (`file` names it in errors). */
export function parseConfig(text: string, file = '<config>'): IBQConfig {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new ConfigError(file, `not valid YAML: ${(e as Error).message}`);
  }
  return configFromDocument(doc, file);
}

/**
 * The tokenizer of an AR config: its `first_stage_config.params`, read as the init_args of a
 * tokenizer config (`file` names the AR config in errors).
 */
export function configFromInitArgs(initArgs: Record<string, unknown>, file = '<config>'): IBQConfig {
  return configFromDocument({ model: { class_path: 'src.IBQ.models.ibqgan.IBQ', init_args: initArgs } }, file);
}

function configFromDocument(doc: unknown, file: string): IBQConfig {
  const args = get(doc, ['model', 'init_args'], file) as Obj;
  if (!args || typeof args !== 'object') throw new ConfigError(file, "missing 'model.init_args'");
  const dd = args.ddconfig as Obj;
  if (!dd || typeof dd !== 'object') throw new ConfigError(file, "missing 'model.init_args.ddconfig'");
  const k = (n: string) => `model.init_args.ddconfig.${n}`;
  const ddconfig: DDConfig = {
    double_z: bool(dd.double_z, k('double_z'), file, true),
    z_channels: num(dd.z_channels, k('z_channels'), file),
    resolution: num(dd.resolution, k('resolution'), file),
    in_channels: num(dd.in_channels, k('in_channels'), file),
    out_ch: num(dd.out_ch, k('out_ch'), file),
    ch: num(dd.ch, k('ch'), file),
    ch_mult: nums(dd.ch_mult, k('ch_mult'), file),
    num_res_blocks: num(dd.num_res_blocks, k('num_res_blocks'), file),
    attn_resolutions: nums(dd.attn_resolutions, k('attn_resolutions'), file),
    dropout: num(dd.dropout, k('dropout'), file, 0),
  };
  if (ddconfig.ch % 32 !== 0) throw new ConfigError(file, `'${k('ch')}' must be a multiple of 32 (GroupNorm has 32 groups), got ${ddconfig.ch}`);
  const lp = ((args.lossconfig as Obj | undefined)?.params ?? {}) as Obj;
  const l = (n: string) => `model.init_args.lossconfig.params.${n}`;
  const lossconfig: LossConfig = {
    disc_start: num(lp.disc_start, l('disc_start'), file, 0),
    disc_weight: num(lp.disc_weight, l('disc_weight'), file, 1),
    quant_loss_weight: num(lp.quant_loss_weight, l('quant_loss_weight'), file, 1),
    entropy_loss_weight: num(lp.entropy_loss_weight, l('entropy_loss_weight'), file, 0.1),
    gen_loss_weight: num(lp.gen_loss_weight, l('gen_loss_weight'), file, 0.1),
    lecam_loss_weight: num(lp.lecam_loss_weight, l('lecam_loss_weight'), file, 0),
    disc_in_channels: num(lp.disc_in_channels, l('disc_in_channels'), file, 3),
    perceptual_weight: num(lp.perceptual_weight, l('perceptual_weight'), file, 1),
    disc_num_layers: num(lp.disc_num_layers, l('disc_num_layers'), file, 3),
    disc_ndf: num(lp.disc_ndf, l('disc_ndf'), file, 64),
  };
  const m = (n: string) => `model.init_args.${n}`;
  const data = ((doc as Obj).data as Obj | undefined)?.init_args as Obj | undefined;
  const trainer = (doc as Obj).trainer as Obj | undefined;
  return {
    ddconfig,
    lossconfig,
    n_embed: num(args.n_embed, m('n_embed'), file),
    embed_dim: num(args.embed_dim, m('embed_dim'), file),
    learning_rate: num(args.learning_rate, m('learning_rate'), file, 1e-4),
    beta: num(args.beta, m('beta'), file, 0.25),
    use_entropy_loss: bool(args.use_entropy_loss, m('use_entropy_loss'), file, false),
    entropy_temperature: num(args.entropy_temperature, m('entropy_temperature'), file, 0.01),
    sample_minimization_weight: num(args.sample_minimization_weight, m('sample_minimization_weight'), file, 1),
    batch_maximization_weight: num(args.batch_maximization_weight, m('batch_maximization_weight'), file, 1),
    l2_normalize: bool(args.l2_normalize, m('l2_normalize'), file, false),
    use_ema: bool(args.use_ema, m('use_ema'), file, false),
    lr_drop_epoch: nums(args.lr_drop_epoch, m('lr_drop_epoch'), file, []),
    lr_drop_rate: num(args.lr_drop_rate, m('lr_drop_rate'), file, 0.1),
    batch_size: num(data?.batch_size, 'data.init_args.batch_size', file, 4),
    max_epochs: trainer?.max_epochs === undefined || trainer?.max_epochs === null ? null : num(trainer.max_epochs, 'trainer.max_epochs', file),
    precision: typeof trainer?.precision === 'string' || typeof trainer?.precision === 'number' ? String(trainer.precision) : null,
    class_path: String((doc as Obj).model && ((doc as Obj).model as Obj).class_path),
  };
}

export function loadConfig(file: string): IBQConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, file);
}

/** Latent grid side: resolution / 2^(levels-1). */
export function latentSize(cfg: IBQConfig): number {
  return cfg.ddconfig.resolution / 2 ** (cfg.ddconfig.ch_mult.length - 1);
}
