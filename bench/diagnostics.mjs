// What the lifecycle events on node:diagnostics_channel cost a request: the core's request
// lifecycle (attach a request with a 10 s deadline, run in its scope, finish, close: what both
// adapters do per request, without the framework or the socket) timed
//
//   - with no subscriber, against the same lifecycle in the last version without the channels
//     (--before, built from git by bench/lib.mjs's buildAt()), loaded side by side in this process;
//   - with a no-op subscriber on every channel, against none.
//
// Contenders alternate within each round; reported: medians over rounds of the CPU time per
// request and of the per-round ratios (candidate ÷ baseline).
//
//   node bench/diagnostics.mjs [--rounds 15] [--before <git ref>] [--json]
import { AsyncResource } from 'node:async_hooks'
import diagnostics from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { alternate, buildAt } from './lib.mjs'

const require = createRequire(import.meta.url)
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '15' },
    // The last commit before the lifecycle channels were added.
    before: { type: 'string', default: '1714be0' },
    json: { type: 'boolean' },
  },
})
const rounds = Number(values.rounds)
const ITERATIONS = 100_000

/** @tether/core as it was at `ref` (built once, see buildAt). */
const coreAt = (ref) => require(join(buildAt(ref).dir, 'packages', 'core', 'dist', 'index.js'))

const now = require('@tether/core')
let before
try {
  before = coreAt(values.before)
} catch (error) {
  // A checkout without that commit (a shallow clone, a tarball) measures the subscriber row only.
  console.error(`bench/diagnostics.mjs: no build of ${values.before} (${error.message}); skipping that row`)
}

function cpuNs() {
  const { user, system } = process.cpuUsage()
  return (user + system) * 1_000
}

const noop = () => {}
const request = { method: 'GET', headers: {}, socket: undefined }

/** A response as the core sees one: a close listener, and whether the handler ended it. */
class FakeResponse {
  writableEnded = false
  headersSent = false
  onClose = undefined
  on(_event, listener) {
    this.onClose = listener
    return this
  }
}

/**
 * Runs `ITERATIONS` request lifecycles through `core`; returns the CPU time per request in ns
 * (this process's: on a shared machine, CPU time is what other tenants disturb least).
 */
function lifecycles(core) {
  const tether = core.createTether({ timeout: 10_000, logger: false })
  const lifecycle = () => {
    const res = new FakeResponse()
    tether.attach(request, res).run(noop)
    res.writableEnded = true
    res.headersSent = true
    res.onClose.call(res)
  }
  return () => {
    const start = cpuNs()
    for (let i = 0; i < ITERATIONS; i++) arrival.runInAsyncScope(lifecycle)
    return (cpuNs() - start) / ITERATIONS
  }
}

// Each request starts from the empty async context, as one a server reads from a socket does.
// Without this, a contender that leaves its AsyncLocalStorage through run() leaves a context
// behind (run() restores by building a new one, holding its storage's undefined), and whatever
// enters a storage next, in either contender, starts by copying that context: on Node 24 that
// made the lifecycle of the contender that restores exactly about 100 ns dearer than in a server.
const arrival = new AsyncResource('bench.arrival')

async function compare({ name, baseline, candidate }) {
  const measure = (contender) => {
    contender.setup?.()
    const ns = contender.fn()
    contender.teardown?.()
    return ns
  }
  measure(baseline) // warm-up
  measure(candidate)
  return {
    name,
    baseline: baseline.name,
    candidate: candidate.name,
    ...(await alternate(rounds, baseline, candidate, measure)),
  }
}

const CHANNELS = [
  now.REQUEST_START_CHANNEL,
  now.REQUEST_END_CHANNEL,
  now.DEADLINE_CHANNEL,
  now.SHED_CHANNEL,
  now.LINGERING_CHANNEL,
  now.LEAK_CHANNEL,
]
const current = { name: 'no subscriber', fn: lifecycles(now) }
const results = [
  ...(before === undefined
    ? []
    : [
        await compare({
          name: `request lifecycle, no subscriber: before the channels (${values.before}) vs now`,
          baseline: { name: 'before', fn: lifecycles(before) },
          candidate: current,
        }),
      ]),
  await compare({
    name: 'request lifecycle: no subscriber vs a no-op subscriber on every channel',
    baseline: current,
    candidate: {
      name: 'subscribed',
      fn: current.fn,
      setup: () => {
        for (const name of CHANNELS) diagnostics.subscribe(name, noop)
      },
      teardown: () => {
        for (const name of CHANNELS) diagnostics.unsubscribe(name, noop)
      },
    },
  }),
]

if (values.json) {
  console.log(JSON.stringify({ node: process.version, rounds, before: values.before, results }))
} else {
  console.log(`node ${process.version}, ${rounds} interleaved rounds of ${ITERATIONS} requests, medians`)
  for (const r of results) {
    console.log(
      `${r.name}: ${r.candidate} ${r.candidateNs.toFixed(0)} ns, ${r.baseline} ${r.baselineNs.toFixed(0)} ns, ratio ${r.ratio.toFixed(3)}`,
    )
  }
}
