export { createServer, type ServeLimits, type ServeOptions, type TransformalyServer } from './server.js';
