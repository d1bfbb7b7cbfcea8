// The HTTP pairs of bench/http.mjs without sockets: each request is a real `http.IncomingMessage`
// and `http.ServerResponse` handed straight to the app (Express's `app(req, res)`, Fastify's
// `app.routing(req, res)`), its output kept in the response until it is dropped. No parser, no
// kernel, no load generator: what is left is the frameworks' and tether's JavaScript, which is
// what tether can change, measured closely enough to see a tenth of a microsecond (the socket
// benchmark's noise is several microseconds a request on a shared machine).
//
// Both contenders of a pair live in one fresh process and are timed in alternating windows
// (A B, B A, ...) of --window requests, 50 arriving per turn of the event loop; the figures are
// the medians over rounds of each one's time per request and of the ratio baseline ÷ candidate.
//
//   node bench/in-process.mjs [--rounds 40] [--window 5000] [--only express] [--json]
//   node bench/in-process.mjs --bytes [--json]     heap bytes each request allocates, bare vs tether
//
// Pairs that need a server (hardenServer()) are left out. Uses the built packages (pnpm build).
import { execFileSync } from 'node:child_process'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Duplex } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { getHeapSpaceStatistics } from 'node:v8'
import { contenders } from './apps.mjs'
import { alternate } from './lib.mjs'
import { pairNamed, selectPairs } from './pairs.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '40' },
    window: { type: 'string', default: '5000' },
    only: { type: 'string' },
    pair: { type: 'string' },
    bytes: { type: 'boolean' },
    json: { type: 'boolean' },
  },
})
const rounds = Number(values.rounds)
const window = Number(values.window)
for (const [option, value] of [
  ['--rounds', rounds],
  ['--window', window],
]) {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${option} must be a whole number ≥ 1, got ${value}`)
}

// The socket every request names; no response is given it. Without one, Node keeps a response's
// output in the response (dropped with it), so 'finish' and 'close' are emitted here.
const socket = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() })

/** What a handler is called with: an app's entry point taking (req, res). */
async function entryOf(name) {
  const app = await contenders[name]()
  if (typeof app.routing === 'function') {
    await app.ready()
    return app.routing
  }
  return app
}

const BATCH = 50
const headers = { host: '127.0.0.1:3000', 'user-agent': 'wrk', accept: '*/*' }
const responses = new Array(BATCH)

/**
 * Serves BATCH GET requests for `path` as a loaded server does: they all arrive in one turn of the
 * event loop, each a fresh request and response, and each response closes once it has ended.
 */
async function serveBatch(handle, path) {
  for (let i = 0; i < BATCH; i++) {
    const req = new IncomingMessage(socket)
    req.method = 'GET'
    req.url = path
    req.httpVersionMajor = 1
    req.httpVersionMinor = 1
    req.httpVersion = '1.1'
    req.headers = { ...headers }
    req.complete = true
    req.push(null)
    const res = new ServerResponse(req)
    responses[i] = res
    handle(req, res)
  }
  // Async handlers end their responses on later ticks; an immediate runs after all of them.
  await new Promise(setImmediate)
  for (let i = 0; i < BATCH; i++) {
    const res = responses[i]
    if (!res.writableEnded) throw new Error(`a response to ${path} did not end within the turn`)
    // As Node's server does once the socket took the last byte: 'finish', then 'close' (the
    // frameworks' own timeouts are cleared at 'finish').
    res.emit('finish')
    res.emit('close')
    responses[i] = undefined
  }
}

/**
 * Microseconds per request over one window of `window` requests. Wall time, not CPU time: the
 * process does nothing else meanwhile, and the kernel's CPU accounting is too coarse for windows
 * of a few milliseconds. A window the scheduler interrupted is an outlier the median drops.
 */
async function measure(handle, path) {
  const started = process.hrtime.bigint()
  for (let i = 0; i < window; i += BATCH) await serveBatch(handle, path)
  return Number(process.hrtime.bigint() - started) / 1_000 / window
}

/** Measures one pair in this process: both apps built, warmed up, then timed in alternation. */
async function measurePair(pair) {
  const baseline = { handle: await entryOf(pair.baseline) }
  const candidate = { handle: await entryOf(pair.candidate) }
  // Warm-up: both paths optimized before the first measured window.
  for (const contender of [baseline, candidate]) await measure(contender.handle, pair.path)
  const medians = await alternate(rounds, baseline, candidate, (contender) => measure(contender.handle, pair.path))
  return {
    ...pair,
    baselineMicros: medians.baselineNs,
    candidateMicros: medians.candidateNs,
    // alternate() reports candidate ÷ baseline; the figure here is baseline ÷ candidate, as for HTTP.
    ratio: 1 / medians.ratio,
  }
}

// ---- bytes allocated: `--bytes` ----------------------------------------------------------------
// What a request allocates on V8's heap, counted rather than timed: new space grows by exactly what
// is allocated until a scavenge empties it, and in this loop the same requests allocate the same
// bytes to within a few, whatever the machine is doing. A window a scavenge interrupted is measured
// again. test/hot-path.test.ts holds tether's share to a budget.
//
// Two things would make the count depend on the run rather than the code:
// - the clock: Node's http caches the Date header's string and an unref'd timer drops the cache
//   at each second (utcDate in lib/internal/http.js). The first response to build it again after
//   ServerResponse#_storeHeader was optimized deoptimizes that function ("insufficient type
//   feedback"), and what V8 optimizes it into next depends on which app was running at that
//   instant: Express on Node 24 allocated 1,275 or 1,356 bytes more with tether from one run to
//   the next, by when the second turned. So the first app measured is served until the cache has
//   been dropped once (see rebuildDateHeaderOnce), before anything is counted;
// - warm-up: after 200 batches some paths were still being optimized (Node 26's Express, by about
//   170 bytes a request), so each app serves 1,000 first, past which the counts no longer move.
// Named as test/hot-path.test.ts budgets them: the pairs of pairs.mjs they measure.
const BYTE_PAIRS = [
  ['express', 'express: bare vs tether'],
  ['fastify', 'fastify: bare vs tether'],
  ['express fan-out: Promise.all vs all()', 'express fan-out: Promise.all vs all()'],
  ['fastify fan-out: Promise.all vs all()', 'fastify fan-out: Promise.all vs all()'],
  // For reference, not budgeted: what the contract's floor allocates.
  ["express: the contract's floor", "reference: express bare vs the contract's floor"],
  ["fastify: the contract's floor", "reference: fastify bare vs the contract's floor"],
].map(([name, of]) => ({ ...pairNamed(of), name }))
const newSpaceUsed = () => getHeapSpaceStatistics().find((space) => space.space_name === 'new_space').space_used_size

let dateHeaderRebuilt = false
/**
 * The first time it is called in this process, serves requests until Node's cached Date header
 * has been dropped and built again: until the clock has passed the next whole second, and a little
 * more for the timer that drops it to run (it runs in the turn after its time, and every batch is
 * a turn of the event loop).
 */
async function rebuildDateHeaderOnce(handle, path) {
  if (dateHeaderRebuilt) return
  dateHeaderRebuilt = true
  const rebuilt = Math.ceil(Date.now() / 1000) * 1000 + 100
  while (Date.now() < rebuilt) await serveBatch(handle, path)
}

/** Bytes allocated per request: the median of 9 windows of 4 batches that no scavenge interrupted. */
async function bytesPerRequest(handle, path) {
  await rebuildDateHeaderOnce(handle, path)
  for (let i = 0; i < 1000; i++) await serveBatch(handle, path)
  const samples = []
  for (let attempt = 0; attempt < 100 && samples.length < 9; attempt++) {
    const before = newSpaceUsed()
    for (let i = 0; i < 4; i++) await serveBatch(handle, path)
    const after = newSpaceUsed()
    if (after > before) samples.push((after - before) / (4 * BATCH))
  }
  if (samples.length < 9) throw new Error('scavenges interrupted nearly every window')
  return Math.round(samples.sort((a, b) => a - b)[4])
}

if (values.bytes && !process.execArgv.includes('--single-threaded')) {
  // V8 on one thread: with its compilers on other threads, what gets optimized, and so what escape
  // analysis spares, varies from one run to the next by a few hundred bytes a request.
  const argv = ['--single-threaded', fileURLToPath(import.meta.url), ...process.argv.slice(2)]
  process.stdout.write(execFileSync(process.execPath, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }))
  process.exit(0)
}
if (values.bytes) {
  const handles = new Map()
  const bytes = new Map()
  const of = async (name, path) => {
    const key = `${name} ${path}`
    if (!bytes.has(key)) {
      if (!handles.has(name)) handles.set(name, await entryOf(name))
      bytes.set(key, await bytesPerRequest(handles.get(name), path))
    }
    return bytes.get(key)
  }
  const results = {}
  for (const pair of BYTE_PAIRS) {
    const baseline = await of(pair.baseline, pair.path)
    const candidate = await of(pair.candidate, pair.path)
    results[pair.name] = { baseline, candidate, added: candidate - baseline }
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ node: process.version, results })}\n`)
  else
    for (const [name, r] of Object.entries(results))
      console.log(`${name}: ${r.baseline} → ${r.candidate} bytes a request (${r.added >= 0 ? '+' : ''}${r.added})`)
  process.exit(0)
}

if (values.pair !== undefined) {
  // A child of the run below: one pair, its result on stdout.
  process.stdout.write(`${JSON.stringify(await measurePair(pairNamed(values.pair)))}\n`)
  process.exit(0)
}

// Each pair in a fresh process: apps measured earlier in the same process would leave their
// optimized code, heap and timers behind, and later pairs ran measurably slower for it.
const pairs = selectPairs(values.only).filter((pair) => !pair.candidate.includes('hardenServer()'))
const results = []
for (const pair of pairs) {
  const argv = [
    fileURLToPath(import.meta.url),
    '--pair',
    pair.name,
    '--rounds',
    String(rounds),
    '--window',
    String(window),
  ]
  const out = execFileSync(process.execPath, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  results.push(JSON.parse(out))
}

if (values.json) {
  process.stdout.write(`${JSON.stringify({ node: process.version, rounds, window, results })}\n`)
} else {
  console.log(`Node ${process.version}, ${rounds} rounds of ${window} requests per contender, no sockets`)
  for (const r of results) {
    const target = r.target === undefined ? '' : ` (target ≥ ${r.target})`
    console.log(
      `${r.name} ${r.path}: ${r.baselineMicros.toFixed(2)} µs vs ${r.candidateMicros.toFixed(2)} µs, ratio ${r.ratio.toFixed(3)}${target}`,
    )
  }
}
