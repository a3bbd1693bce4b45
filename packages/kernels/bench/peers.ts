// Benchmark peers on the same work: onnxruntime-web's wasm backend (same thread count),
// onnxruntime-node (native CPU) and @tensorflow/tfjs-backend-wasm (single-threaded in Node).
// Each `prepare*` returns a runner or a reason it cannot run; runners read their result
// back (ORT returns host tensors; tfjs is asked for dataSync) so the work is not skipped.

import { type OnnxNode, onnxModel } from './onnx.js';

export type Runner = () => Promise<void>;
export interface PeerWork {
  nodes: OnnxNode[];
  inputs: [string, number[], Float32Array][];
  outputs: [string, number[], number?][];
}

export const ORT_WEB = 'onnxruntime-web-wasm';
export const ORT_NODE = 'onnxruntime-node';
export const TFJS_WASM = 'tfjs-backend-wasm';

/* eslint-disable @typescript-eslint/no-explicit-any */
let ortWeb: any, ortNode: any;

async function ortSession(lib: any, work: PeerWork, options: Record<string, unknown>): Promise<Runner> {
  const model = onnxModel(work.nodes, work.inputs.map(([n, s]) => [n, s]), work.outputs);
  const session = await lib.InferenceSession.create(model, options);
  const feeds: Record<string, unknown> = {};
  for (const [n, s, data] of work.inputs) feeds[n] = new lib.Tensor('float32', data, s);
  return async () => {
    const out = await session.run(feeds);
    for (const k of Object.keys(out)) void out[k].data;
  };
}

export async function prepareOrtWeb(work: PeerWork, threads: number): Promise<Runner | string> {
  try {
    ortWeb ??= await import('onnxruntime-web');
    ortWeb.env.wasm.numThreads = threads;
    ortWeb.env.logLevel = 'error';
    return await ortSession(ortWeb, work, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  } catch (e) {
    return `onnxruntime-web: ${(e as Error).message}`;
  }
}

export async function prepareOrtNode(work: PeerWork, threads: number): Promise<Runner | string> {
  try {
    ortNode ??= await import('onnxruntime-node');
    return await ortSession(ortNode, work, { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 });
  } catch (e) {
    return `onnxruntime-node: ${(e as Error).message}`;
  }
}

let tf: any;

/** tfjs with the wasm backend (loaded once). */
export async function tfjsWasm(): Promise<any | string> {
  try {
    if (!tf) {
      const core = await import('@tensorflow/tfjs-core');
      await import('@tensorflow/tfjs-backend-wasm');
      await core.setBackend('wasm');
      await core.ready();
      tf = core;
    }
    return tf;
  } catch (e) {
    return `tfjs-backend-wasm: ${(e as Error).message}`;
  }
}
