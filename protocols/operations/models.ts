/** Model operations (Train, TrainTest, Aggregation, LocalCrossValidation): none yet. */
export const ModelOperationSchemas = [] as const;
