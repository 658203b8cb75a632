// Public surface of @transformaly/report.
export { renderReport, UNTRAINED_BANNER, type ReportInput } from './render.js';
export { writeReport, checkRunResults } from './write.js';
