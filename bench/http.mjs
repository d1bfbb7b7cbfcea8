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
//   node bench/http.mjs [--rounds 12] [--processes 3] [--seconds 2] [--only fastify | --pair NAME] [--json]
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { comparePair, generatorFrom, onCore, pinned, runCapture, wrkWindow } from './lib.mjs'
import { pairNamed, selectPairs } from './pairs.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '12' },
    processes: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
    pair: { type: 'string' },
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

const generator = generatorFrom('wrk', 'wrk') ?? 'autocannon'

/** Loads one URL for one window; returns the requests served and the rate. */
async function load(url) {
  if (generator === 'wrk') return wrkWindow(url, connections, seconds)
  const cli = require.resolve('autocannon/autocannon.js')
  const out = await runCapture(
    onCore(1, [process.execPath, cli, '-c', String(connections), '-d', String(seconds), '-j', url]),
  )
  const report = JSON.parse(out)
  return { requests: report.requests.total, rate: report.requests.average }
}

let node = process.version

const results = []
for (const pair of values.pair === undefined ? selectPairs(values.only) : [pairNamed(values.pair)]) {
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
