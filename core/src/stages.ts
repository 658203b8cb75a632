// The stage table: every place that walks over the stages of a pipeline (config resolution, the container, the
// detector's saved states, `transformaly plugins`) reads it from here.
import type { TokenName } from './tokens.js';
import type { StageKind } from './types.js';

/** Stages built once per pipeline, or once per detector (and feature space): these hold fitted state. */
export type StageScope = 'pipeline' | 'detector';

/** What each kind of stage is: the key a typed plugin declares it under, its token, contract and scope. */
export const STAGE_KINDS = {
  data: { token: 'ImageSource', contract: 'ImageSource', label: 'an image source', scope: 'pipeline', listing: 'Image sources' },
  runtime: { token: 'Runtime', contract: 'Runtime', label: 'a runtime', scope: 'pipeline', listing: 'Runtimes' },
  backbone: { token: 'Backbone', contract: 'Backbone', label: 'a backbone', scope: 'pipeline', listing: 'Backbones' },
  distiller: { token: 'Distiller', contract: 'Distiller', label: 'a distiller', scope: 'detector', listing: 'Distillers' },
  scorer: { token: 'DensityScorer', contract: 'DensityScorer', label: 'a density scorer', scope: 'detector', listing: 'Density scorers' },
  combiner: { token: 'FeatureCombiner', contract: 'FeatureCombiner', label: 'a feature combiner', scope: 'detector', listing: 'Feature combiners' },
} as const satisfies Record<StageKind, { token: TokenName; contract: string; label: string; scope: StageScope; listing: string }>;

/**
 * The slots of a config, in the order they are resolved: the config path, the kind of stage it takes, and the name of
 * its state in a saved detector (stages built once per pipeline have no state).
 */
export const STAGE_SLOTS = [
  { path: 'data', kind: 'data' },
  { path: 'runtime', kind: 'runtime' },
  { path: 'backbone', kind: 'backbone' },
  { path: 'distiller', kind: 'distiller', state: 'distiller' },
  { path: 'scorers.pretrained', kind: 'scorer', state: 'scorer-pretrained' },
  { path: 'scorers.finetuned', kind: 'scorer', state: 'scorer-finetuned' },
  { path: 'combiner', kind: 'combiner', state: 'combiner' },
] as const satisfies readonly { path: string; kind: StageKind; state?: string }[];

export type StageSlot = (typeof STAGE_SLOTS)[number];
export type StagePath = StageSlot['path'];

export const STAGE_KIND_NAMES = Object.keys(STAGE_KINDS) as StageKind[];

export function stageSlot(path: StagePath): StageSlot {
  return STAGE_SLOTS.find((s) => s.path === path)!;
}

/** The name under which a saved detector stores the state of the stage in `path`. */
export function stateName(path: 'distiller' | 'scorers.pretrained' | 'scorers.finetuned' | 'combiner'): string {
  return (stageSlot(path) as { state: string }).state;
}
