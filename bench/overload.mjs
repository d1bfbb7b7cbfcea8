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
// Each window also reads the server's CPU time per request sent, and the latency of good answers:
// at 0.5x (no overload) they are what a variant costs when it has nothing to shed.
//
// Then a burst, per variant in --burst-variants: by default 0.5x for 1 s, 10x for 2 s, 0.5x for 3 s, with
// the server tracing its concurrency limit every 50 ms; outcomes are bucketed by send time.
//
//   node bench/overload.mjs [--rounds 5] [--seconds 2] [--factors 0.5,2,4] [--variants a,b]
//                           [--burst-variants a,b] [--burst-rounds 1] [--burst 0.5:1000,10:2000,0.5:3000]
//                           [--json]
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { median, pinned, startServer } from './lib.mjs'

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    factors: { type: 'string', default: '0.5,2,4' },
    variants: {
      type: 'string',
      default: 'naive,tether,tether + pool,tether + handler pool,tether auto,tether concurrency 4',
    },
    'burst-variants': { type: 'string', default: 'tether,tether + handler pool,tether auto' },
    'burst-rounds': { type: 'string', default: '1' },
    // factor:ms segments, comma-separated.
    burst: { type: 'string', default: '0.5:1000,10:2000,0.5:3000' },
    json: { type: 'boolean' },
  },
})
const rounds = Number(values.rounds)
const seconds = Number(values.seconds)
const factors = values.factors.split(',').map(Number)
const variants = values.variants.split(',')
const burstVariants = values['burst-variants'] === '' ? [] : values['burst-variants'].split(',')
const burstRounds = Number(values['burst-rounds'])
// The burst: what is offered (× capacity) and for how long.
const BURST = values.burst.split(',').map((segment) => {
  const [factor, ms] = segment.split(':').map(Number)
  return { factor, ms }
})
const BUCKET_MS = 250
const BUDGET_MS = 200
const GIVE_UP_MS = 250
const WORK_MS = 5
const SLICE_MS = 0.5
// The server's core is 0; the load generator (this process) takes core 1.
if (pinned) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' })

const server = startServer(fileURLToPath(new URL('./overload-server.mjs', import.meta.url)), [
  JSON.stringify({
    workMs: WORK_MS,
    sliceMs: SLICE_MS,
    budgetMs: BUDGET_MS,
    variants: ['bare', ...new Set([...variants, ...burstVariants])],
  }),
])
const { ports, node } = await server.ask()

function newAgent() {
  return new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
}

/** One request; resolves with its status (0: gave up or failed), latency in ms, and when it was sent. */
function call(agent, port) {
  return new Promise((resolve) => {
    const started = performance.now()
    let settled = false
    const done = (status) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve({ status, ms: performance.now() - started, sentAt: started })
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

/**
 * Open loop through `schedule` (segments of `rate` requests per second for `ms`): outcomes of every
 * request sent, with `at`, when it was sent (ms from the start).
 */
async function openLoop(port, schedule) {
  const agent = newAgent()
  const outcomes = []
  const total = schedule.reduce((sum, { ms }) => sum + ms, 0)
  // Requests due `elapsed` ms in: the integral of the schedule's rate.
  const dueAt = (elapsed) => {
    let due = 0
    let from = 0
    for (const { rate, ms } of schedule) {
      due += (Math.min(Math.max(elapsed - from, 0), ms) * rate) / 1000
      from += ms
    }
    return Math.floor(due)
  }
  const started = performance.now()
  let sent = 0
  await new Promise((resolve) => {
    // A 1 ms tick sends whatever the schedule says is due, so the offered rate holds even when a
    // tick comes late (the generator shares its core with the rest of the machine).
    const tick = setInterval(() => {
      const elapsed = performance.now() - started
      const due = dueAt(Math.min(elapsed, total))
      while (sent < due) {
        sent++
        outcomes.push(call(agent, port))
      }
      if (elapsed >= total) {
        clearInterval(tick)
        resolve()
      }
    }, 1)
  })
  const results = await Promise.all(outcomes)
  agent.destroy()
  for (const result of results) result.at = result.sentAt - started
  return results
}

/** The `q` quantile of a list of numbers (nearest rank); undefined for an empty list. */
function quantile(list, q) {
  if (list.length === 0) return undefined
  const sorted = [...list].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
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
  await server.ask('begin')
  const results = await openLoop(ports[variant], [{ rate, ms: seconds * 1000 }])
  const { cpuMicros } = await server.ask('end')
  const clientUsed = process.cpuUsage(clientCpu)
  const clientLoad = (clientUsed.user + clientUsed.system) / 1000 / (seconds * 1000 + GIVE_UP_MS)
  let good = 0
  let late = 0
  let shed = 0
  let expired = 0
  let gaveUp = 0
  const goodMs = []
  for (const { status, ms } of results) {
    if (status === 200 && ms <= BUDGET_MS) {
      good++
      goodMs.push(ms)
    } else if (status === 200) late++
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
    cpuPerRequestUs: cpuMicros / Math.max(1, results.length),
    p50: quantile(goodMs, 0.5),
    p99: quantile(goodMs, 0.99),
  }
}

/**
 * One burst for `variant`: the server's trace and the outcomes, by send time, in buckets of
 * BUCKET_MS (goodput: answers 200 in time, as a share of what the capacity serves in a bucket).
 */
async function burst(variant) {
  await server.ask('idle')
  const cap = await capacity(ports.bare, 1500)
  await server.ask('idle')
  await server.ask({ trace: variant })
  const results = await openLoop(
    ports[variant],
    BURST.map(({ factor, ms }) => ({ rate: factor * cap, ms })),
  )
  const { samples } = await server.ask('untrace')
  const total = BURST.reduce((sum, { ms }) => sum + ms, 0)
  const buckets = []
  for (let from = 0; from < total; from += BUCKET_MS) {
    const mine = results.filter(({ at }) => at >= from && at < from + BUCKET_MS)
    const good = mine.filter(({ status, ms }) => status === 200 && ms <= BUDGET_MS).length
    const traced = samples.filter(({ t }) => t >= from && t < from + BUCKET_MS)
    const last = traced.at(-1)
    buckets.push({
      from,
      offered: mine.length,
      good,
      shed: mine.filter(({ status }) => status === 'shed').length,
      gaveUp: mine.filter(({ status }) => status === 0).length,
      goodput: good / ((BUCKET_MS / 1000) * cap),
      // The limit at the bucket's end, the most requests waiting and handlers running in it.
      limit: last?.limit ?? null,
      queued: traced.length === 0 || last?.queued === null ? null : Math.max(...traced.map((s) => s.queued)),
      busy: traced.length === 0 ? null : Math.max(...traced.map((s) => s.busy)),
      lag: traced.length === 0 ? null : Math.max(...traced.map((s) => s.lag)),
    })
  }
  // After the burst (the last segment): how long until every bucket answers all it is offered in
  // time (≥ 90%).
  const burstEnd = total - (BURST.at(-1)?.ms ?? 0)
  const after = buckets.filter(({ from }) => from >= burstEnd)
  const firstGood = after.findIndex(
    (b, i) => b.offered > 0 && after.slice(i).every((later) => later.good >= 0.9 * later.offered),
  )
  return {
    variant,
    capacity: cap,
    buckets,
    recoveredAfterMs: firstGood < 0 ? null : firstGood * BUCKET_MS,
    limitBefore: buckets.filter(({ from }) => from < (BURST.length > 1 ? BURST[0].ms : 0)).at(-1)?.limit ?? null,
    limitEnd: buckets.at(-1)?.limit ?? null,
    limitMin: Math.min(...samples.map((s) => s.limit ?? Number.POSITIVE_INFINITY)),
  }
}

const cells = []
const capacities = []
// Warm-up: every variant's code paths JIT-compiled before anything is measured.
await capacity(ports.bare, 1000)
for (const variant of new Set([...variants, ...burstVariants])) await openLoop(ports[variant], [{ rate: 100, ms: 500 }])

for (let round = 0; round < rounds; round++) {
  const order = variants.map((_, i) => variants[(i + round) % variants.length])
  for (const factor of round % 2 === 0 ? factors : [...factors].reverse()) {
    for (const variant of order) {
      const result = await cell(variant, factor)
      cells.push({ round, ...result })
      if (!values.json)
        console.error(
          `round ${round + 1}: ${variant} at ${factor}x (capacity ${result.capacity.toFixed(0)}/s): goodput ${result.goodput.toFixed(2)}; ${result.offered} sent, ${result.good} good, ${result.late} late, ${result.shed} shed, ${result.expired} expired, ${result.gaveUp} gave up; server ${result.cpuPerRequestUs.toFixed(0)} µs CPU/request, good p50 ${result.p50?.toFixed(1)} ms p99 ${result.p99?.toFixed(1)} ms; client CPU ${(result.clientLoad * 100).toFixed(0)}%`,
        )
    }
  }
}
const bursts = []
for (let round = 0; round < burstRounds; round++) {
  for (const variant of round % 2 === 0 ? burstVariants : [...burstVariants].reverse()) {
    const result = await burst(variant)
    bursts.push({ round, ...result })
    if (!values.json)
      console.error(
        `burst ${round + 1}: ${variant} (capacity ${result.capacity.toFixed(0)}/s): limit ${result.limitBefore} before, ${result.limitMin} at least, ${result.limitEnd} at the end; all served in time again ${result.recoveredAfterMs ?? 'never'} ms after the burst\n${result.buckets.map((b) => `  ${String(b.from).padStart(4)} ms: ${b.offered} sent, ${b.good} good, ${b.shed} shed, ${b.gaveUp} gave up; limit ${b.limit}, queued ≤ ${b.queued}, running ≤ ${b.busy}, event-loop lag ≤ ${b.lag} ms`).join('\n')}`,
      )
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
      cpuPerRequestUs: median(mine.map((c) => c.cpuPerRequestUs)),
      p50: median(mine.map((c) => c.p50 ?? Number.NaN)),
      p99: median(mine.map((c) => c.p99 ?? Number.NaN)),
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
  burst: BURST,
  bucketMs: BUCKET_MS,
  bursts,
}
if (values.json) console.log(JSON.stringify(summary))
else {
  console.log(`goodput (answers 200 within ${BUDGET_MS} ms, share of capacity), median of ${rounds} rounds`)
  for (const r of results)
    console.log(
      `${r.variant.padEnd(21)} ${String(r.factor).padStart(3)}x: ${r.goodput.toFixed(2)}  (${r.offered} sent: ${r.good} good, ${r.late} late, ${r.shed} shed, ${r.expired} expired, ${r.gaveUp} gave up; ${r.cpuPerRequestUs.toFixed(0)} µs CPU/request; good p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms)`,
    )
  console.log(
    `node ${node}, capacity ${summary.capacity.toFixed(0)} req/s${pinned ? ', server on core 0, client on core 1' : ''}`,
  )
}
