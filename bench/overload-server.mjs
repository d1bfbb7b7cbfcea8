// The overload benchmark's server process: one Express app per variant, each on its own port, in
// ONE process pinned to one core by the driver (bench/overload.mjs), so that every variant meets
// the same JIT, heap and machine state. Each request does WORK_MS of CPU work in SLICE_MS slices
// with an `await` between them, as a parse, a query and a render would.
//
// The driver asks 'idle' before each window: it is answered once no handler is still running and
// no request has arrived for a moment, so that the work a variant leaves behind (connect-timeout's
// handlers run on after their 503; requests left in the accept queue) is not billed to the next.
// It brackets each window with 'begin'/'end' (answered with this process's CPU time over the
// window), and a burst with 'trace'/'untrace' (answered with what the variant's concurrency limit
// and handlers did, every 50 ms).
import { createPool, inspect } from '@tether/core'
import { tether } from '@tether/express'
import connectTimeout from 'connect-timeout'
import express from 'express'

const args = JSON.parse(process.argv[2] ?? '{}')
const WORK_MS = args.workMs ?? 5
const SLICE_MS = args.sliceMs ?? 0.5
const BUDGET_MS = args.budgetMs ?? 200

let busy = 0
let lastArrival = 0

/** Spins the CPU for `ms`: the work of one slice, measured on the clock (the core is ours). */
function spin(ms) {
  const until = performance.now() + ms
  while (performance.now() < until) {}
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

/** The request's work: WORK_MS of CPU in SLICE_MS slices; stops between slices once `signal` aborts. */
async function work(signal) {
  busy++
  try {
    for (let done = 0; done < WORK_MS; done += SLICE_MS) {
      spin(SLICE_MS)
      await nextTurn()
      signal?.throwIfAborted()
    }
  } finally {
    busy--
  }
}

const ok = { ok: true }

/** The variants, as a user would write each. */
const variants = {
  // Capacity probe: the same work without any timeout, loaded closed-loop by the driver.
  bare() {
    const app = express()
    app.get('/', async (_req, res) => {
      await work()
      res.json(ok)
    })
    return app
  },
  // connect-timeout answers 503 at the budget; the handler checks `req.timedout` before writing.
  naive() {
    const app = express()
    app.use(connectTimeout(`${BUDGET_MS}ms`))
    app.get('/', async (req, res) => {
      await work()
      if (!req.timedout) res.json(ok)
    })
    return app
  },
  // tether: the work listens to the request's signal.
  tether() {
    const app = express()
    app.use(tether({ timeout: BUDGET_MS, logger: false }))
    app.get('/', async (req, res) => {
      await work(req.scope.signal)
      res.json(ok)
    })
    return app
  },
  // tether's own request-path limit, learnt from latency: the handler is the tether variant's.
  'tether auto'() {
    const app = express()
    app.use(tether({ timeout: BUDGET_MS, logger: false, concurrency: 'auto' }))
    app.get('/', async (req, res) => {
      await work(req.scope.signal)
      res.json(ok)
    })
    return app
  },
  // The same with a fixed limit, the handler pool's size: the option, against the recipe.
  'tether concurrency 4'() {
    const app = express()
    app.use(tether({ timeout: BUDGET_MS, logger: false, concurrency: 4 }))
    app.get('/', async (req, res) => {
      await work(req.scope.signal)
      res.json(ok)
    })
    return app
  },
  // The same, with the work behind a pool of one: no hand tuning (no maxQueue).
  'tether + pool'() {
    const app = express()
    app.use(tether({ timeout: BUDGET_MS, logger: false }))
    const pool = createPool({ concurrency: 1 })
    app.get('/', async (_req, res) => {
      await pool.run((signal) => work(signal))
      res.json(ok)
    })
    return app
  },
  // The request path itself behind a pool: the rest of the chain (the handler, unchanged from the
  // tether variant) is the pool's task, which ends when the response closes. Not tuned to this
  // workload: four at a time, where one would suit CPU-bound work best.
  'tether + handler pool'() {
    const app = express()
    app.use(tether({ timeout: BUDGET_MS, logger: false }))
    const handlers = createPool({ concurrency: 4 })
    app.use((_req, res, next) => {
      const rest = () =>
        new Promise((resolve) => {
          res.once('close', resolve)
          next()
        })
      // Shed (PoolOverloadedError: 503 with Retry-After), or dropped once the request has ended.
      handlers.run(rest).catch(next)
    })
    app.get('/', async (req, res) => {
      await work(req.scope.signal)
      res.json(ok)
    })
    return app
  },
}

const ports = {}
// Where each variant's concurrency limit is listed in inspect().concurrency (oldest first).
const limitOf = {}
for (const name of args.variants ?? Object.keys(variants)) {
  const make = variants[name]
  if (make === undefined) throw new Error(`unknown variant: ${name}`)
  const limits = inspect().concurrency.length
  const app = make()
  if (inspect().concurrency.length > limits) limitOf[name] = limits
  // Express's final handler prints every error it answers unless the app's env is 'test': the
  // sheds and deadlines of an overload run would flood the terminal (and cost CPU to print).
  app.set('env', 'test')
  const server = app.listen(0, '127.0.0.1')
  server.on('request', () => {
    lastArrival = performance.now()
  })
  await new Promise((resolve) => server.once('listening', resolve))
  ports[name] = server.address().port
}

let started
let trace
process.on('message', (message) => {
  if (message === 'begin') {
    started = process.cpuUsage()
    process.send({ begun: true })
  } else if (message === 'end') {
    const used = process.cpuUsage(started)
    process.send({ cpuMicros: used.user + used.system })
  } else if (message?.trace !== undefined) {
    const index = limitOf[message.trace]
    const samples = []
    const t0 = performance.now()
    let last = performance.now()
    const sample = () => {
      const limit = index === undefined ? undefined : inspect().concurrency[index]
      const now = performance.now()
      samples.push({
        t: Math.round(now - t0),
        // How late this sample's timer fired: the event loop's delay.
        lag: Math.max(0, Math.round(now - last - 50)),
        busy,
        limit: limit?.limit ?? null,
        active: limit?.active ?? null,
        queued: limit?.queued ?? null,
        shed: limit?.shed ?? null,
      })
      last = now
    }
    sample()
    trace = { samples, timer: setInterval(sample, 50) }
    process.send({ tracing: true })
  } else if (message === 'untrace') {
    clearInterval(trace.timer)
    process.send({ samples: trace.samples })
    trace = undefined
  } else if (message === 'idle') {
    // Bounded: a handler that never ends would otherwise stall the benchmark forever.
    const giveUpAt = Date.now() + 120_000
    // Idle means no handler running and no request arriving for a while: connections a client gave
    // up on can still sit in the kernel's accept queue, and are served (as zombies) when accepted.
    const check = () => {
      if ((busy === 0 && performance.now() - lastArrival > 300) || Date.now() > giveUpAt) process.send({ busy })
      else setTimeout(check, 20)
    }
    check()
  } else if (message === 'exit') {
    process.exit(0)
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ ready: true, ports, node: process.version })
