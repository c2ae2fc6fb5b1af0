import type { HandlerMap } from '../context.ts';

/** Model operations (Train, TrainTest, Aggregation, LocalCrossValidation): none yet. */
export const modelHandlers = {} satisfies Partial<HandlerMap>;
