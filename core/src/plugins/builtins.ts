import { sumCombinerPlugin, zscoreCombinerPlugin } from '../combine/index.js';
import { distillerPlugin } from '../distill/index.js';
import {
  CifarSource,
  cifar10SourceSchema,
  cifar100SourceSchema,
  FolderSource,
  folderSourceSchema,
  IdxSource,
  idxSourceSchema,
  NormalAbnormalSource,
  normalAbnormalSourceSchema,
} from '../data/index.js';
import type { ImageSource, JsonSchema, TransformalyPlugin } from '../types.js';
import { corePlugin } from './define.js';

function sourcePlugin<O>(name: string, description: string, optionsSchema: JsonSchema, create: (options: O) => ImageSource): TransformalyPlugin {
  return corePlugin({ name, description, stages: { data: { optionsSchema, create } } });
}

/** Stages that ship with the core, named in the config without an install. */
export const BUILTIN_PLUGINS: ReadonlyMap<string, TransformalyPlugin> = new Map<string, TransformalyPlugin>([
  ['folder', sourcePlugin('folder', 'images in root/{train,test}/<class>/', folderSourceSchema, (o: any) => new FolderSource(o))],
  ['normal-abnormal', sourcePlugin('normal-abnormal', 'normal training images; test/{normal,abnormal}/', normalAbnormalSourceSchema, (o: any) => new NormalAbnormalSource(o))],
  ['idx', sourcePlugin('idx', 'MNIST / Fashion-MNIST IDX files, gzipped or raw', idxSourceSchema, (o: any) => new IdxSource(o))],
  ['cifar10', sourcePlugin('cifar10', 'CIFAR-10 binary batches', cifar10SourceSchema, (o: any) => new CifarSource({ ...o, variant: 'cifar10' }))],
  ['cifar100', sourcePlugin('cifar100', 'CIFAR-100 binary files (20 coarse classes by default)', cifar100SourceSchema, (o: any) => new CifarSource({ ...o, variant: 'cifar100' }))],
  ['transformaly', distillerPlugin],
  ['sum', sumCombinerPlugin],
  ['zscore', zscoreCombinerPlugin],
]);
