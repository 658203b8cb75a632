export { imageItemsFromArgs } from './images.js';
