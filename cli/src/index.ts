export { imageItemsFromArgs } from './images.js';
export { pluginsReport } from './commands/plugins.js';
export { describeOptions } from './schema-text.js';
export { scaffoldPlugin, pluginNames, PLUGIN_KINDS, BUILD_DEPENDENCIES, type PluginKind, type PluginNames, type Scaffolded, type ScaffoldOptions } from './commands/create-plugin.js';
