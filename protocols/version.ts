/** Sent in `challenge`, the hellos and `welcome`; a peer with any other version is refused (exact match). */
// 2: assignJob inputs may carry their bytes (`data`), so small products need no fetch.
// 3: resources over the stream threshold move in chunks (productOffer, resourceWant,
//    resourceChunk); resourceData and result carry `size` and may come without `data`. A v2
//    peer could not read a streamed resource, so the versions do not mix.
// 4: a worker sends `jobStarted` only for an operation still running after STARTED_NOTICE_MS;
//    `jobCompleted`/`productOffer` say how long it ran (`ranMs`). A v3 scheduler would refuse the
//    new field.
// 5: a sealed product over the stream threshold is a segmented envelope (`fdlSealed: 2`, one
//    AES-GCM tag per 1 MiB segment) that a v4 node cannot open; no message changed.
// 6: `artifactEvent` carries `events` (the transitions of one artifact since its last push, in
//    order) instead of one `event`; a job's SCHEDULED/RUNNING may be left out of a batch that also
//    carries a later state of that job. A v5 workbench could not read the batch.
// 7: a worker may offer a product by an `upload` name instead of its sha256 (`productOffer.upload`)
//    and say the sha256 when its bytes are all read (`productDigest`): a sealed product is no longer
//    sealed once to be hashed before its upload starts. A v6 scheduler would refuse the offer.
// 8: an artifact's final `artifactState` event carries the status's own fields (`updatedAt`,
//    `error`, `resultResourceId`, `provenance`): a watcher has the final status without a
//    `getStatus` (at 1,000 workers a 1,001-job reply per artifact). A v7 workbench would refuse them.
export const PROTOCOL_VERSION = 8;
