// The generated host-wasm interface: the committed file is what the AssemblyScript gives, and
// a renamed export or a reordered code in the assembly changes it (so the host's types move
// with it, and `npm run build` type-checks the host against it before asc runs).
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const PKG = join(import.meta.dirname, '..');
const GEN = join(PKG, 'scripts', 'gen-wasm-interface.mjs');
const ASM = join(PKG, 'src', 'backends', 'cpu', 'assembly');
const TMP = mkdtempSync(join(tmpdir(), 'ibq-wasm-interface-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

describe('wasm-interface.ts', () => {
  it('is up to date with assembly/*.ts', () => {
    const r = spawnSync(process.execPath, [GEN, '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('follows a renamed export and a reordered code in the assembly', () => {
    const asm = join(TMP, 'asm');
    cpSync(ASM, asm, { recursive: true });
    const el = join(asm, 'elementwise.ts');
    const src = readFileSync(el, 'utf8');
    expect(src).toMatch(/export function siluGrad\(/);
    expect(src).toMatch(/NEG = 0, ABS = 1,/);
    writeFileSync(el, src.replace('export function siluGrad(', 'export function siluGradient(').replace('NEG = 0, ABS = 1,', 'NEG = 1, ABS = 0,'));
    const out = join(TMP, 'wasm-interface.ts');
    execFileSync(process.execPath, [GEN, '--asm', asm, '--out', out]);
    const text = readFileSync(out, 'utf8');
    expect(text).toMatch(/^ {2}siluGradient\(/m);
    expect(text).not.toMatch(/^ {2}siluGrad\(/m);
    expect(text).toMatch(/NEG: 1, ABS: 0,/);
    // The committed interface disagrees with the changed sources: --check names it stale.
    const r = spawnSync(process.execPath, [GEN, '--check', '--asm', asm], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/stale/);
  });
});
