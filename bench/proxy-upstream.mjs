// One upstream of the proxy benchmark (bench/proxies.mjs): an Express app with tether and
// hardenServer()'s defaults on a fixed port of 127.0.0.1. It tells its parent 'ready' once it
// listens, and on SIGTERM shuts down the way its --mode says, then exits:
//
//   naive      server.close(), as most apps do
//   nodrain    tether's shutdown() with its default drain (0): idle keep-alive connections closed
//              at once
//   tether     tether's shutdown() with { drain: 1000 }, as the production guide advises behind a proxy
//
// Routes: GET / and POST / answer after 2 ms; GET /slow never answers, so its deadline does
// (with --status, or tether's default status without it); GET /stats says how many requests this
// process has received, how many /slow ones, and how many of its requests' clients hung up (as
// tether saw it).
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { hardenServer, inspect, shutdown } from '@tether/core'
import { tether } from '@tether/express'
import express from 'express'

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    mode: { type: 'string', default: 'tether' },
    // Absent: tether's own default, whatever it is in the build being measured.
    status: { type: 'string' },
    timeout: { type: 'string', default: '200' },
  },
})
const port = Number(values.port)
let slowStarted = 0
let served = 0

const app = express()
app.use((req, _res, next) => {
  if (req.path !== '/stats') served++
  next()
})
const status = values.status === undefined ? {} : { status: Number(values.status) }
app.use(tether({ timeout: Number(values.timeout), ...status, logger: false }))
app.get('/', async (_req, res) => {
  await sleep(2)
  res.json({ ok: true, port })
})
app.post('/', express.json(), async (req, res) => {
  await sleep(2)
  res.json({ received: req.body, port })
})
app.get('/slow', () => {
  slowStarted++ // and never answer: the deadline does
})
app.get('/stats', (_req, res) => res.json({ slowStarted, served, clientClosed: inspect().counters.clientClosed }))

const server = hardenServer(app.listen(port, '127.0.0.1', () => process.send?.('ready')))

process.once('SIGTERM', async () => {
  // Whatever happens, the process exits within a bounded time.
  setTimeout(() => process.exit(1), 15_000).unref()
  if (values.mode === 'naive') {
    server.close(() => process.exit(0))
    return
  }
  await shutdown(server, values.mode === 'nodrain' ? { grace: 5_000 } : { grace: 5_000, drain: 1_000 })
  process.exit(0)
})
