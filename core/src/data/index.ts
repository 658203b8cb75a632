// Public surface of core/src/data (re-exported from core/src/index.ts).
export {};
