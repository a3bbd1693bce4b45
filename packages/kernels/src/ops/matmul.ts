// Filled in by the op family's author; see ops/elementwise.ts for the pattern.
export {};
