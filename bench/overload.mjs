// Goodput under overload: what share of the machine's capacity still reaches callers in time when
// more is offered than the server can serve.
//
// Scenario (what a user would build): one Express server pinned to one core; each request does
// 5 ms of CPU work in 0.5 ms async slices; the caller's budget is 200 ms (sent in
// `x-request-timeout-ms`, and the server's own `timeout`); an open-loop client on the other core
// offers k × the capacity measured just before, and gives up at 250 ms. Goodput = answers 200
// received within 200 ms, per second, as a share of that capacity.
//
// Every window is preceded by a capacity probe (closed loop on the same work without timeouts, in
// the same server process); each round loads each variant at each factor in turn, rotating the
// order from round to round; the figure is the median over rounds. Before each window the driver
// waits until the server is idle, so that work a variant leaves behind is not billed to the next.
//
//   node bench/overload.mjs [--rounds 5] [--seconds 2] [--factors 2,4] [--variants a,b] [--json]
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { median, pinned, startServer } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    factors: { type: 'string', default: '2,4' },
    variants: { type: 'string', default: 'naive,tether,tether + pool,tether + handler pool' },
    json: { type: 'boolean' },
  },
})
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const factors = values.factors.split(',').map(Number)
const variants = values.variants.split(',')
const BUDGET_MS = 200
const GIVE_UP_MS = 250
const WORK_MS = 5
const SLICE_MS = 0.5
// The server's core is 0; the load generator (this process) takes core 1.
if (pinned) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' })

const server = startServer(fileURLToPath(new URL('./overload-server.mjs', import.meta.url)), [
  JSON.stringify({ workMs: WORK_MS, sliceMs: SLICE_MS, budgetMs: BUDGET_MS, variants: ['bare', ...variants] }),
])
const { ports, node } = await server.ask()

function newAgent() {
  return new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
}

/** One request; resolves with its status (0: gave up or failed) and latency in ms. */
function call(agent, port) {
  return new Promise((resolve) => {
    const started = performance.now()
    let settled = false
    const done = (status) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({ status, ms: performance.now() - started })
    }
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        agent,
        headers: { 'x-request-timeout-ms': String(BUDGET_MS) },
      },
      (res) => {
        res.resume()
        // A shed (the pool's, with Retry-After) is told apart from a deadline answer.
        const status = res.statusCode === 503 && res.headers['retry-after'] !== undefined ? 'shed' : res.statusCode
        res.on('end', () => done(status))
        res.on('error', () => done(0))
      },
    )
    req.on('error', () => done(0))
    // The caller gives up: it stops waiting and closes its connection, as a client timeout does.
    const timer = setTimeout(() => {
      req.destroy()
      done(0)
    }, GIVE_UP_MS)
    req.end()
  })
}

/**
 * Closed loop, `connections` at a time, for `ms`: the requests per second the server sustains.
 * Enough connections that the server never waits on the client between requests (with a few, a
 * descheduled client leaves the server idle and the capacity reads low).
 */
async function capacity(port, ms, connections = 16) {
  const agent = newAgent()
  const until = performance.now() + ms
  let completed = 0
  const worker = async () => {
    while (performance.now() < until) {
      const { status } = await call(agent, port)
      if (status === 200) completed++
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: connections }, worker))
  const elapsed = performance.now() - started
  agent.destroy()
  return (completed * 1000) / elapsed
}

/** Open loop at `rate` requests per second for `ms`: outcomes of every request sent. */
async function openLoop(port, rate, ms) {
  const agent = newAgent()
  const outcomes = []
  const started = performance.now()
  let sent = 0
  await new Promise((resolve) => {
    // A 1 ms tick sends whatever the schedule says is due, so the offered rate holds even when a
    // tick comes late (the generator shares its core with the rest of the machine).
    const tick = setInterval(() => {
      const elapsed = performance.now() - started
      const due = Math.min(Math.floor((elapsed * rate) / 1000), Math.floor((ms * rate) / 1000))
      while (sent < due) {
        sent++
        outcomes.push(call(agent, port))
      }
      if (elapsed >= ms) {
        clearInterval(tick)
        resolve()
      }
    }, 1)
  })
  const results = await Promise.all(outcomes)
  agent.destroy()
  return results
}

async function cell(variant, factor) {
  await server.ask('idle')
  // Capacity is measured right before each window: what the machine gives this server drifts
  // (other processes share the core), and the share that matters is the one during the window.
  const cap = await capacity(ports.bare, 1500)
  capacities.push(cap)
  await server.ask('idle')
  const rate = factor * cap
  const clientCpu = process.cpuUsage()
  const results = await openLoop(ports[variant], rate, seconds * 1000)
  const clientUsed = process.cpuUsage(clientCpu)
  const clientLoad = (clientUsed.user + clientUsed.system) / 1000 / (seconds * 1000 + GIVE_UP_MS)
  let good = 0
  let late = 0
  let shed = 0
  let expired = 0
  let gaveUp = 0
  for (const { status, ms } of results) {
    if (status === 200 && ms <= BUDGET_MS) good++
    else if (status === 200) late++
    else if (status === 0) gaveUp++
    else if (status === 'shed') shed++
    else expired++
  }
  const goodput = good / seconds / cap
  return {
    variant,
    factor,
    capacity: cap,
    offered: results.length,
    good,
    late,
    shed,
    expired,
    gaveUp,
    goodput,
    clientLoad,
  }
}

const cells = []
const capacities = []
// Warm-up: every variant's code paths JIT-compiled before anything is measured.
await capacity(ports.bare, 1000)
for (const variant of variants) await openLoop(ports[variant], 100, 500)

for (let round = 0; round < rounds; round++) {
  const order = variants.map((_, i) => variants[(i + round) % variants.length])
  for (const factor of round % 2 === 0 ? factors : [...factors].reverse()) {
    for (const variant of order) {
      const result = await cell(variant, factor)
      cells.push({ round, ...result })
      if (!values.json)
        console.error(
          `round ${round + 1}: ${variant} at ${factor}x (capacity ${result.capacity.toFixed(0)}/s): goodput ${result.goodput.toFixed(2)}; ${result.offered} sent, ${result.good} good, ${result.late} late, ${result.shed} shed, ${result.expired} expired, ${result.gaveUp} gave up; client CPU ${(result.clientLoad * 100).toFixed(0)}%`,
        )
    }
  }
}
await server.ask('idle')
server.stop()

const results = []
for (const variant of variants) {
  for (const factor of factors) {
    const mine = cells.filter((c) => c.variant === variant && c.factor === factor)
    const sum = (key) => mine.reduce((total, c) => total + c[key], 0)
    results.push({
      variant,
      factor,
      goodput: median(mine.map((c) => c.goodput)),
      goodputs: mine.map((c) => c.goodput),
      offered: sum('offered'),
      good: sum('good'),
      late: sum('late'),
      shed: sum('shed'),
      expired: sum('expired'),
      gaveUp: sum('gaveUp'),
    })
  }
}
const summary = {
  node,
  pinned,
  rounds,
  seconds,
  factors,
  budgetMs: BUDGET_MS,
  giveUpMs: GIVE_UP_MS,
  workMs: WORK_MS,
  sliceMs: SLICE_MS,
  capacity: median(capacities),
  capacities,
  results,
}
if (values.json) console.log(JSON.stringify(summary))
else {
  console.log(`goodput (answers 200 within ${BUDGET_MS} ms, share of capacity), median of ${rounds} rounds`)
  for (const r of results)
    console.log(
      `${r.variant.padEnd(16)} ${r.factor}x: ${r.goodput.toFixed(2)}  (${r.offered} sent: ${r.good} good, ${r.late} late, ${r.shed} shed, ${r.expired} expired, ${r.gaveUp} gave up)`,
    )
  console.log(
    `node ${node}, capacity ${summary.capacity.toFixed(0)} req/s${pinned ? ', server on core 0, client on core 1' : ''}`,
  )
}
