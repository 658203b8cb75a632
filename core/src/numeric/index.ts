// Public surface of core/src/numeric (re-exported from core/src/index.ts).
export {};
