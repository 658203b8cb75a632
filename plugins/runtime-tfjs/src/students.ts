// Entry point `@transformaly/runtime-tfjs/students` (alias `transformaly-tfjs`): the Transformaly distiller whose
// students train on tfjs while the teacher runs on the config's runtime, e.g. `distiller: 'transformaly-tfjs'`.
import { studentsPlugin } from './plugin.js';

export { studentsPlugin as plugin };
export default studentsPlugin;
