import type { HandlerMap } from '../context.ts';
import { count, countFinal, countInit } from './count.ts';
import { groupCount, groupCountFinal, groupCountInit } from './group-count.ts';
import { mean, meanFinal, meanInit } from './mean.ts';

export type { CountProduct } from './count.ts';
export type { GroupCountProduct, GroupCountRunning } from './group-count.ts';
export type { MeanProduct, MeanRunning } from './mean.ts';

export const estimatorHandlers = {
  CountInit: countInit,
  Count: count,
  CountFinal: countFinal,
  MeanInit: meanInit,
  Mean: mean,
  MeanFinal: meanFinal,
  GroupCountInit: groupCountInit,
  GroupCount: groupCount,
  GroupCountFinal: groupCountFinal,
} satisfies Partial<HandlerMap>;
