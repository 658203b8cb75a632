export { imageItemsFromArgs } from './images.js';
export { pluginsReport } from './commands/plugins.js';
export { describeOptions } from './schema-text.js';
