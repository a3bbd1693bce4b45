// A first-fit free-list allocator over byte ranges of the shared wasm memory. Only the main
// thread allocates; kernels run synchronously, so a released region is free at once.

export const ALIGN = 64; // a cache line: keeps SIMD loads and the threads' outputs apart

interface Region {
  start: number;
  size: number;
}

export class FreeList {
  /** Free regions sorted by start, never adjacent (coalesced). */
  private free: Region[] = [];
  private sizes = new Map<number, number>();

  /** Adds [start, start+size) to the free space (memory growth, or the initial heap). */
  addSpace(start: number, size: number): void {
    this.insert(start, size);
  }

  /** A region of at least `bytes` (rounded up to ALIGN), or null when none fits. */
  alloc(bytes: number): number | null {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i];
      if (r.size < size) continue;
      const start = r.start;
      if (r.size === size) this.free.splice(i, 1);
      else {
        r.start += size;
        r.size -= size;
      }
      this.sizes.set(start, size);
      return start;
    }
    return null;
  }

  release(start: number): void {
    const size = this.sizes.get(start);
    if (size === undefined) throw new Error(`cpu: release of unknown region at ${start}`);
    this.sizes.delete(start);
    this.insert(start, size);
  }

  /** Free bytes at the very end of the space (what a growth can extend). */
  tailFree(end: number): number {
    const last = this.free[this.free.length - 1];
    return last && last.start + last.size === end ? last.size : 0;
  }

  private insert(start: number, size: number): void {
    // Binary search for the first region after `start`.
    let lo = 0, hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid].start < start) lo = mid + 1;
      else hi = mid;
    }
    const prev = this.free[lo - 1];
    const next = this.free[lo];
    if (prev && prev.start + prev.size === start) {
      prev.size += size;
      if (next && prev.start + prev.size === next.start) {
        prev.size += next.size;
        this.free.splice(lo, 1);
      }
    } else if (next && start + size === next.start) {
      next.start = start;
      next.size += size;
    } else {
      this.free.splice(lo, 0, { start, size });
    }
  }
}
