// HTTP/2 overhead: server CPU time per request, bare Fastify with `http2: true` (h2c) vs the same
// with the tether plugin, measured as bench/http.mjs measures HTTP/1.1 (both contenders in one
// server process pinned to core 0, each pair in several fresh processes in turn, the load
// generator on core 1, alternating windows, the server's own process.cpuUsage() per window, the
// median of per-round ratios baseline ÷ candidate). The load comes from h2load (Debian's nghttp2-client) when it is installed, else
// from bench/h2-load.mjs, a small Node HTTP/2 client.
//
//   node bench/http2.mjs [--rounds 12] [--processes 3] [--seconds 2] [--json]
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { comparePair, has, onCore, pinned, runCapture } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '12' },
    processes: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '2' },
    sessions: { type: 'string', default: '4' },
    streams: { type: 'string', default: '16' },
    json: { type: 'boolean' },
  },
})
const rounds = Number(values.rounds)
const processes = Number(values.processes)
const seconds = Number(values.seconds)
const { sessions, streams } = values

export const PAIRS = [
  {
    name: 'calibration: fastify http2 bare vs a 2nd copy',
    baseline: 'fastify h2 bare',
    candidate: 'fastify h2 bare (2nd copy)',
    path: '/',
  },
  {
    name: 'fastify over HTTP/2: bare vs tether',
    baseline: 'fastify h2 bare',
    candidate: 'fastify h2 + tether',
    path: '/',
    target: 0.95,
  },
]

const generator = has('h2load') ? 'h2load' : 'bench/h2-load.mjs'

/** Loads one URL for one window; returns the requests served and the rate. */
async function load(url) {
  if (generator === 'h2load') {
    const out = await runCapture(onCore(1, ['h2load', '-c', sessions, '-m', streams, '-D', String(seconds), url]))
    const requests = Number(/(\d+) succeeded/.exec(out)?.[1])
    const rate = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1])
    return { requests, rate }
  }
  const script = fileURLToPath(new URL('./h2-load.mjs', import.meta.url))
  const args = [url, '--sessions', sessions, '--streams', streams, '--seconds', String(seconds)]
  const out = await runCapture(onCore(1, [process.execPath, script, ...args]))
  return JSON.parse(out)
}

let node = process.version

const results = []
for (const pair of PAIRS) {
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

const summary = { node, generator, pinned, rounds, processes, seconds, sessions, streams, results }
if (values.json) console.log(JSON.stringify(summary))
else
  console.log(
    `node ${node}, load by ${generator} (${sessions} sessions × ${streams} streams)${pinned ? ', server on core 0, load on core 1' : ''}, ${rounds} rounds of ${seconds} s windows over ${processes} processes per pair`,
  )
