import type { HandlerMap } from '../context.ts';
import { count, countFinal, countInit } from './count.ts';
import { covariance, covarianceFinal, covarianceInit } from './covariance.ts';
import { minMax, minMaxFinal, minMaxInit } from './extrema.ts';
import { groupCount, groupCountFinal, groupCountInit } from './group-count.ts';
import { groupMean, groupMeanFinal, groupMeanInit } from './group-mean.ts';
import { histogram, histogramFinal, histogramInit, quantiles, quantilesFinal, quantilesInit } from './histogram.ts';
import { mean, meanFinal, meanInit } from './mean.ts';
import { sum, sumFinal, sumInit } from './sum.ts';
import { variance, varianceFinal, varianceInit } from './variance.ts';

export type { CountProduct } from './count.ts';
export type { CovarianceProduct } from './covariance.ts';
export type { MinMaxProduct } from './extrema.ts';
export type { GroupCountProduct } from './group-count.ts';
export type { GroupMeanProduct } from './group-mean.ts';
export type { HistogramProduct, QuantileEstimate, QuantilesProduct } from './histogram.ts';
export type { MaskedRunning } from './masked.ts';
export type { MeanProduct } from './mean.ts';
export { DEFAULT_MIN_GROUP_SIZE, FileBudgetLedger } from './privacy.ts';
export type { SumProduct } from './sum.ts';
export type { VarianceProduct } from './variance.ts';

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
  SumInit: sumInit,
  Sum: sum,
  SumFinal: sumFinal,
  VarianceInit: varianceInit,
  Variance: variance,
  VarianceFinal: varianceFinal,
  GroupMeanInit: groupMeanInit,
  GroupMean: groupMean,
  GroupMeanFinal: groupMeanFinal,
  MinMaxInit: minMaxInit,
  MinMax: minMax,
  MinMaxFinal: minMaxFinal,
  HistogramInit: histogramInit,
  Histogram: histogram,
  HistogramFinal: histogramFinal,
  QuantilesInit: quantilesInit,
  Quantiles: quantiles,
  QuantilesFinal: quantilesFinal,
  CovarianceInit: covarianceInit,
  Covariance: covariance,
  CovarianceFinal: covarianceFinal,
} satisfies Partial<HandlerMap>;
