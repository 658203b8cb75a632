// Public surface of core/src/metrics (re-exported from core/src/index.ts).
export {};
