// Public surface of core/src/persistence (re-exported from core/src/index.ts).
export {};
