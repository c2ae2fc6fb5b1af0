// Builders and local use of federated models (train, aggregate, predict): see docs/MODELS.md.
export {};
