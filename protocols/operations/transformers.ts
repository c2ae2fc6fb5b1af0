import { z } from 'zod';
import { Features, Name, ScalarSchema } from './common.ts';

/**
 * Transformers: query stages that rewrite columns on each worker's rows before an estimator
 * or a model reads them. Each compiles to SQL on the worker (lib/data/stages.ts).
 *
 * Fitting. A transformer that needs parameters (a scaler's min/max, an imputer's fill value,
 * a discretizer's edges) takes them from its `fitted` field. When `fitted` is absent the
 * worker fits it on its own rows (Ferdelance's behaviour: every worker gets different
 * parameters). To fit it federatedly, the workbench first runs the matching estimator over
 * the stages before it and fills `fitted` from that result (`fitQuery` in
 * lib/workbench/builders.ts); the worker then applies the very same parameters.
 *
 * `outputs`, when given, names the output column of each input feature (same length and
 * order as `features`); without it each feature is replaced in place.
 */

const Outputs = z.array(Name).min(1).max(4_096).optional();
const Finite = z.number().finite();

export const MinMaxScalerSchema = z
  .object({
    kind: z.literal('MinMaxScaler'),
    features: Features,
    outputs: Outputs,
    /** The output range, [0, 1] by default. */
    range: z.tuple([Finite, Finite]).optional(),
    /** Per feature, in `features` order: the data range the scaler maps onto `range`. */
    fitted: z.array(z.object({ min: Finite, max: Finite }).strict()).max(4_096).optional(),
  })
  .strict();

export const StandardScalerSchema = z
  .object({
    kind: z.literal('StandardScaler'),
    features: Features,
    outputs: Outputs,
    with_mean: z.boolean().optional(),
    with_std: z.boolean().optional(),
    /** Per feature: the mean and the population standard deviation (ddof 0, as scikit-learn). */
    fitted: z.array(z.object({ mean: Finite, std: Finite.min(0) }).strict()).max(4_096).optional(),
  })
  .strict();

export const KBinsDiscretizerSchema = z
  .object({
    kind: z.literal('KBinsDiscretizer'),
    features: Features,
    outputs: Outputs,
    n_bins: z.number().int().min(2).max(1_000),
    /** uniform: equal-width bins between min and max; quantile: equal-count bins. */
    strategy: z.enum(['uniform', 'quantile']),
    /** Per feature: the n_bins + 1 increasing bin edges. */
    fitted: z
      .array(z.object({ edges: z.array(Finite).min(3).max(1_001) }).strict())
      .max(4_096)
      .optional(),
  })
  .strict();

export const BinarizerSchema = z
  .object({
    kind: z.literal('Binarizer'),
    features: Features,
    outputs: Outputs,
    /** A value above the threshold becomes 1, else 0; 0 by default (never "the mean", as the original did). */
    threshold: Finite.optional(),
  })
  .strict();

export const LabelBinarizerSchema = z
  .object({
    kind: z.literal('LabelBinarizer'),
    feature: Name,
    /** The classes, in output order. With two classes there is one output column (1 for classes[1]). */
    classes: z.array(ScalarSchema).min(1).max(1_024),
    neg_label: Finite.optional(),
    pos_label: Finite.optional(),
    /** One name per output column; by default `<feature>` for two classes, else `<feature>_<class>`. */
    outputs: Outputs,
  })
  .strict();

export const OneHotEncoderSchema = z
  .object({
    kind: z.literal('OneHotEncoder'),
    features: Features.max(64),
    /** Per feature, its categories (from the project's metadata): every worker makes the same columns. */
    categories: z.array(z.array(ScalarSchema).min(1).max(1_024)).min(1).max(64),
    /** first: leave out the first category's column; if_binary: only for two-category features. */
    drop: z.enum(['first', 'if_binary']).optional(),
    /** error (default): a value outside the categories fails the query; ignore: all zeros. */
    handle_unknown: z.enum(['error', 'ignore']).optional(),
  })
  .strict();

export const SimpleImputerSchema = z
  .object({
    kind: z.literal('SimpleImputer'),
    features: Features,
    outputs: Outputs,
    strategy: z.enum(['mean', 'median', 'most_frequent', 'constant']),
    /** The value for the `constant` strategy. */
    fill_value: ScalarSchema.optional(),
    /** Per feature: the value that replaces a null. */
    fitted: z.array(ScalarSchema).max(4_096).optional(),
  })
  .strict();

export const ClampSchema = z
  .object({
    /** Ferdelance's FederatedClamp: clips each value to [min, max] (either bound may be absent). */
    kind: z.literal('Clamp'),
    features: Features,
    outputs: Outputs,
    min: Finite.optional(),
    max: Finite.optional(),
  })
  .strict();

export const TrainTestSplitSchema = z
  .object({
    /** Keeps one side of the seeded split of lib/ops/split.ts: the same seed gives the same rows. */
    kind: z.literal('TrainTestSplit'),
    seed: z.number().int().min(-(2 ** 31)).max(2 ** 32 - 1),
    test_fraction: z.number().min(0).max(1),
    side: z.enum(['train', 'test']),
  })
  .strict();

export const TransformerStageSchemas = [
  MinMaxScalerSchema,
  StandardScalerSchema,
  KBinsDiscretizerSchema,
  BinarizerSchema,
  LabelBinarizerSchema,
  OneHotEncoderSchema,
  SimpleImputerSchema,
  ClampSchema,
  TrainTestSplitSchema,
] as const;

export type MinMaxScaler = z.infer<typeof MinMaxScalerSchema>;
export type StandardScaler = z.infer<typeof StandardScalerSchema>;
export type KBinsDiscretizer = z.infer<typeof KBinsDiscretizerSchema>;
export type Binarizer = z.infer<typeof BinarizerSchema>;
export type LabelBinarizer = z.infer<typeof LabelBinarizerSchema>;
export type OneHotEncoder = z.infer<typeof OneHotEncoderSchema>;
export type SimpleImputer = z.infer<typeof SimpleImputerSchema>;
export type Clamp = z.infer<typeof ClampSchema>;
export type TrainTestSplit = z.infer<typeof TrainTestSplitSchema>;
