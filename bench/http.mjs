// HTTP overhead: server CPU time per request, bare framework vs with tether (and vs its peers),
// measured the way that survives a shared, noisy 2-core machine:
//
// - the two contenders of a pair live in ONE server process (bench/http-server.mjs), pinned to
//   core 0; each pair runs in several fresh processes in turn (--processes, 3), the contenders
//   built in alternating order (see comparePair in lib.mjs for why);
// - the load generator (wrk, installed with apt-get when missing and run as root; otherwise
//   autocannon) is pinned to core 1;
// - the two contenders of a pair are loaded in alternating windows (A B, B A, ...);
// - each window reads the server's own process.cpuUsage(), so what is compared is CPU per request,
//   not throughput (which swings ±10% between identical runs here);
// - the figure is the median, over the rounds of every process, of the per-round ratio
//   baseline ÷ candidate: ≥ 1 means the candidate costs no more than the baseline.
//
//   node bench/http.mjs [--rounds 12] [--processes 3] [--seconds 2] [--only fastify] [--json]
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { comparePair, generatorFrom, onCore, pinned, runCapture } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '12' },
    processes: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
    json: { type: 'boolean' },
  },
})
const rounds = Number(values.rounds)
const processes = Number(values.processes)
const seconds = Number(values.seconds)
if (!Number.isInteger(seconds) || seconds < 1)
  throw new RangeError(`--seconds must be a whole number ≥ 1 (wrk's unit), got ${values.seconds}`)
const connections = Number(values.connections)
const require = createRequire(import.meta.url)

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
]

const generator = generatorFrom('wrk', 'wrk') ?? 'autocannon'

/** Loads one URL for one window; returns the requests served and the rate. */
async function load(url) {
  if (generator === 'wrk') {
    const out = await runCapture(onCore(1, ['wrk', '-t1', `-c${connections}`, `-d${seconds}s`, url]))
    const requests = Number(/(\d+) requests in/.exec(out)?.[1])
    const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
    return { requests, rate }
  }
  const cli = require.resolve('autocannon/autocannon.js')
  const out = await runCapture(
    onCore(1, [process.execPath, cli, '-c', String(connections), '-d', String(seconds), '-j', url]),
  )
  const report = JSON.parse(out)
  return { requests: report.requests.total, rate: report.requests.average }
}

let node = process.version

const results = []
for (const pair of PAIRS) {
  if (values.only && !pair.name.includes(values.only)) continue
  const { result, node: serverNode } = await comparePair(pair, { rounds, processes, load })
  node = serverNode
  results.push(result)
  if (!values.json) {
    const verdict =
      pair.target === undefined
        ? ''
        : ` (target ≥ ${pair.target}: ${result.cpuRatio >= pair.target ? 'meets' : 'MISSES'})`
    console.log(
      `${pair.name} ${pair.path}: CPU/req ${result.baselineCpuUs.toFixed(1)} µs vs ${result.candidateCpuUs.toFixed(1)} µs, ratio ${result.cpuRatio.toFixed(3)}${verdict}; req/s ${Math.round(result.baselineRate)} vs ${Math.round(result.candidateRate)} (${result.rateRatio.toFixed(3)})`,
    )
  }
}

const summary = { node, generator, pinned, rounds, processes, seconds, connections, results }
if (values.json) console.log(JSON.stringify(summary))
else
  console.log(
    `node ${node}, load by ${generator}${pinned ? ', server on core 0, load on core 1' : ''}, ${rounds} rounds of ${seconds} s windows over ${processes} processes per pair`,
  )
