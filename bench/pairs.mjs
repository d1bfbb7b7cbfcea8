// The HTTP/1.1 comparisons, by the names of the apps in bench/apps.mjs: measured over sockets by
// bench/http.mjs, and without sockets by bench/in-process.mjs.

/** The comparisons, each a pair loaded in alternation; ratio = baseline CPU/req ÷ candidate CPU/req. */
export const PAIRS = [
  {
    name: 'calibration: express bare vs a 2nd copy',
    baseline: 'express bare',
    candidate: 'express bare (2nd copy)',
    path: '/',
  },
  // References: what a middleware or hook that does nothing costs, and the contract's floor (one
  // AsyncLocalStorage entry and one close listener per request, the least any integration of
  // tether's contract does), so tether's figures can be read against what no implementation avoids.
  {
    name: 'reference: express bare vs a no-op middleware',
    baseline: 'express bare',
    candidate: 'express + a no-op middleware',
    path: '/',
  },
  {
    name: 'reference: fastify bare vs a no-op onRequest hook',
    baseline: 'fastify bare',
    candidate: 'fastify + a no-op onRequest hook',
    path: '/',
  },
  {
    name: "reference: express bare vs the contract's floor",
    baseline: 'express bare',
    candidate: "express + the contract's floor",
    path: '/',
  },
  {
    name: "reference: fastify bare vs the contract's floor",
    baseline: 'fastify bare',
    candidate: "fastify + the contract's floor",
    path: '/',
  },
  // tether beside the floor: what it adds beyond what no integration of its contract avoids.
  {
    name: "reference: express with the contract's floor vs tether",
    baseline: "express + the contract's floor",
    candidate: 'express + tether',
    path: '/',
  },
  {
    name: "reference: fastify with the contract's floor vs tether",
    baseline: "fastify + the contract's floor",
    candidate: 'fastify + tether',
    path: '/',
  },
  { name: 'express: bare vs tether', baseline: 'express bare', candidate: 'express + tether', path: '/', target: 0.95 },
  { name: 'fastify: bare vs tether', baseline: 'fastify bare', candidate: 'fastify + tether', path: '/', target: 0.95 },
  {
    name: 'express: bare vs tether + hardenServer()',
    baseline: 'express bare',
    candidate: 'express + tether + hardenServer()',
    path: '/',
  },
  {
    name: 'fastify: bare vs tether + hardenServer()',
    baseline: 'fastify bare',
    candidate: 'fastify + tether + hardenServer()',
    path: '/',
  },
  {
    name: 'fastify: handlerTimeout vs tether',
    baseline: 'fastify + handlerTimeout',
    candidate: 'fastify + tether',
    path: '/',
    target: 1,
  },
  {
    name: 'express: connect-timeout vs tether',
    baseline: 'express + connect-timeout',
    candidate: 'express + tether',
    path: '/',
  },
  {
    name: 'express fan-out: Promise.all vs all()',
    baseline: 'express bare',
    candidate: 'express + tether',
    path: '/fanout',
    target: 0.95,
  },
  {
    // Both with tether: what all() costs beside Promise.all, the middleware set aside.
    name: 'express fan-out, both with tether: Promise.all vs all()',
    baseline: 'express + tether, Promise.all',
    candidate: 'express + tether',
    path: '/fanout',
  },
  {
    name: 'fastify fan-out: Promise.all vs all()',
    baseline: 'fastify bare',
    candidate: 'fastify + tether',
    path: '/fanout',
    target: 0.95,
  },
  {
    name: 'fastify fan-out, both with tether: Promise.all vs all()',
    baseline: 'fastify + tether, Promise.all',
    candidate: 'fastify + tether',
    path: '/fanout',
  },
  // The fan-out's floor (bench/apps.mjs): the request's floor and, in the handler, Promise.all
  // with what the fan-out contract adds to it (a signal for the tasks, an AsyncLocalStorage entry
  // for them, the signal aborted at the end). The first pair is the least the fan-out targets'
  // candidate could cost; the second, what all() and the middleware add beyond it.
  {
    name: "reference: express fan-out, Promise.all vs the contract's floor",
    baseline: 'express bare',
    candidate: "express + the contract's floor",
    path: '/fanout',
  },
  {
    name: "reference: express fan-out, the contract's floor vs all()",
    baseline: "express + the contract's floor",
    candidate: 'express + tether',
    path: '/fanout',
  },
  {
    name: "reference: fastify fan-out, Promise.all vs the contract's floor",
    baseline: 'fastify bare',
    candidate: "fastify + the contract's floor",
    path: '/fanout',
  },
  {
    name: "reference: fastify fan-out, the contract's floor vs all()",
    baseline: "fastify + the contract's floor",
    candidate: 'fastify + tether',
    path: '/fanout',
  },
  // On demand (`--only footprint`): why the figures without sockets understate what tether costs
  // over them. The first two run the same statement per request beside the contract's floor: 200
  // calls of one small function, or one call each of 200 copies of it (about 40 KB of machine code,
  // by bench/code-size.mjs). Without sockets they cost 0.24 and 1.58 µs; over sockets 0.1 and 5.4:
  // in a server, whose every request also runs the parser, the kernel's network stack and the
  // framework, code run once per request is read from memory again for each request. The third
  // allocates instead, for comparison.
  {
    name: 'footprint: fastify floor vs + 200 calls of one function',
    baseline: "fastify + the contract's floor",
    candidate: "fastify + the contract's floor + 200 calls of one function",
    path: '/',
    onDemand: true,
  },
  {
    name: 'footprint: fastify floor vs + 200 distinct functions',
    baseline: "fastify + the contract's floor",
    candidate: "fastify + the contract's floor + 200 distinct functions",
    path: '/',
    onDemand: true,
  },
  {
    name: 'footprint: fastify floor vs + 1.2 KB allocated',
    baseline: "fastify + the contract's floor",
    candidate: "fastify + the contract's floor + 1.2 KB allocated",
    path: '/',
    onDemand: true,
  },
]

/**
 * The pairs a run measures: those whose name contains `only`, or, without it, every pair but the
 * ones measured on demand.
 */
export function selectPairs(only) {
  return PAIRS.filter((pair) => (only === undefined ? pair.onDemand !== true : pair.name.includes(only)))
}

/** The pair named `name` exactly. */
export function pairNamed(name) {
  const pair = PAIRS.find((candidate) => candidate.name === name)
  if (pair === undefined) throw new Error(`bench/pairs.mjs has no pair named ${name}`)
  return pair
}
