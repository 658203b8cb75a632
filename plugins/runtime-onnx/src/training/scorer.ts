// Scoring with trained students: every student's forward in one onnxruntime session, its weights constants of the
// graph, so that scoring a batch is one run for all blocks, and onnxruntime prepacks each weight once instead of
// taking it as an input on every run.
import * as ort from 'onnxruntime-node';
import { checkBlockSpec, checkInitialWeights, checkTrainingBatch, OnnxGraph, serializeOnnxModel } from '@transformaly/core';
import type { BlockSpec, BlockTap, Matrix, StudentScorer, Tensor } from '@transformaly/core';
import { createOrtSession, type OrtSessionSettings } from '../sessions.js';
import {
  buildStudentForwardGraph,
  imageMeans,
  STUDENT_INPUT,
  STUDENT_OPSET_IMPORTS,
  STUDENT_TARGET,
  STUDENT_TOKEN_DISCREPANCY,
} from './student-block.js';

const prefixOf = (i: number) => `student${i}/`;

/**
 * The forward graphs of `students.length` students side by side: inputs `student{i}/input` and `student{i}/target`,
 * outputs `student{i}/per_token` [N * tokens] (`STUDENT_TOKEN_DISCREPANCY`); each student's weights are initializers.
 */
export function buildStudentScoringGraph(spec: BlockSpec, students: readonly Record<string, Tensor>[]): OnnxGraph {
  const merged = new OnnxGraph('students_scoring');
  students.forEach((weights, i) => {
    const single = buildStudentForwardGraph(spec);
    const rename = (name: string) => (name === '' ? '' : prefixOf(i) + name);
    for (const input of single.inputs) {
      const weight = weights[input.name];
      if (input.name === STUDENT_INPUT || input.name === STUDENT_TARGET) merged.input(rename(input.name), input.type, input.dims);
      else merged.initializer(rename(input.name), { dims: weight.dims, data: weight.data });
    }
    // The student's output itself is not needed for scoring: its node goes, and so do constants only it used (which
    // onnxruntime would otherwise warn about).
    const nodes = single.nodes.filter((node) => !node.outputs.includes('output'));
    const used = new Set(nodes.flatMap((node) => node.inputs));
    for (const { name, tensor } of single.initializers) if (used.has(name)) merged.initializer(rename(name), tensor);
    for (const node of nodes) {
      for (const value of Object.values(node.attributes)) {
        if (typeof value === 'object' && value !== null && 'kind' in value && value.kind === 'graph') throw new Error('student scoring graph: subgraphs are not expected');
      }
      merged.node(node.opType, node.inputs.map(rename), node.outputs.map(rename), node.attributes, { name: rename(node.name), domain: node.domain });
    }
    merged.output(rename(STUDENT_TOKEN_DISCREPANCY), 'float32', ['NT']);
  });
  return merged;
}

/** A `StudentScorer` on onnxruntime: one session for every student. */
export async function createOnnxStudentScorer(settings: OrtSessionSettings, spec: BlockSpec, students: readonly Record<string, Tensor>[]): Promise<StudentScorer> {
  if (students.length === 0) throw new Error('student scorer: no students');
  checkBlockSpec(spec);
  for (const weights of students) checkInitialWeights(spec, weights);
  const model = await serializeOnnxModel(buildStudentScoringGraph(spec, students), { opsetImports: { ...STUDENT_OPSET_IMPORTS } });
  let session: ort.InferenceSession | undefined = await createOrtSession(model, settings).catch((error: Error) => {
    throw new Error(`student scorer: onnxruntime could not load the scoring graph: ${error.message}`, { cause: error });
  });
  const m = students.length;
  return {
    async discrepancies(taps: readonly BlockTap[]): Promise<Matrix> {
      if (!session) throw new Error('student scorer: used after dispose()');
      if (taps.length !== m) throw new Error(`student scorer: ${taps.length} taps for ${m} students`);
      const feeds: Record<string, ort.Tensor> = {};
      let rows = -1;
      taps.forEach((tap, i) => {
        const n = checkTrainingBatch(spec, tap.input, tap.output);
        if (rows >= 0 && n !== rows) throw new Error(`student scorer: student ${i}'s taps hold ${n} images, student 0's ${rows}`);
        rows = n;
        feeds[prefixOf(i) + STUDENT_INPUT] = new ort.Tensor('float32', tap.input.data, tap.input.dims);
        feeds[prefixOf(i) + STUDENT_TARGET] = new ort.Tensor('float32', tap.output.data, tap.output.dims);
      });
      const out = await session.run(feeds, taps.map((_, i) => prefixOf(i) + STUDENT_TOKEN_DISCREPANCY));
      const data = new Float64Array(rows * m);
      for (let i = 0; i < m; i++) {
        const d = imageMeans(out[prefixOf(i) + STUDENT_TOKEN_DISCREPANCY].data as Float32Array, rows);
        for (let r = 0; r < rows; r++) data[r * m + i] = d[r];
      }
      return { rows, cols: m, data };
    },
    async dispose(): Promise<void> {
      const s = session;
      session = undefined;
      await s?.release();
    },
  };
}
