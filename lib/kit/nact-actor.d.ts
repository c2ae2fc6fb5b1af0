// nact's Actor module (no types of its own), for lib/kit/nact-patch.ts only.
declare module 'nact/lib/actor.js' {
  const actorModule: unknown;
  export default actorModule;
}
