// The soak's server process (run with --expose-gc): one adapter, routes that finish, time out,
// fan out, or get hung up on. The driver (bench/soak.mjs) asks it, over IPC, for its heap after
// a full GC and for what it left behind.
import { setTimeout as sleep } from 'node:timers/promises'
import { all, inspect } from '@tether/core'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'

const adapter = process.argv[2]
const DEADLINE_MS = Number(process.argv[3] ?? 10)
const warnings = []
process.on('warning', (warning) => warnings.push(`${warning.name}: ${warning.message}`))

// What each route does with its request's signal: wait for it (times out, or the client hangs up)
// or finish at once, with or without a fan-out.
const waitForAbort = (signal) => sleep(60_000, undefined, { signal }).catch(() => undefined)
const fanOut = () => all([async () => 1, async (signal) => signal.aborted, async () => 3])

let port
if (adapter === 'express') {
  const app = express()
  app.use(tetherExpress({ timeout: DEADLINE_MS, logger: false }))
  app.get('/fast', (_req, res) => {
    res.json({ ok: true })
  })
  app.get('/fanout', async (_req, res) => {
    res.json(await fanOut())
  })
  app.get('/slow', async (req, res) => {
    await waitForAbort(req.scope.signal)
    res.json({ late: true }) // after the deadline: swallowed and counted
  })
  app.get('/hang', async (req) => {
    await waitForAbort(req.scope.signal)
  })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  port = server.address().port
} else {
  const app = Fastify()
  await app.register(tetherFastify, { timeout: DEADLINE_MS, logger: false })
  app.get('/fast', async () => ({ ok: true }))
  app.get('/fanout', async () => fanOut())
  app.get('/slow', async (request) => {
    await waitForAbort(request.scope.signal)
    return { late: true }
  })
  app.get('/hang', async (request) => {
    await waitForAbort(request.scope.signal)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  port = app.server.address().port
}

function heapAfterGc() {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

process.on('message', async (message) => {
  if (message === 'heap') {
    // Let the last requests' scopes end and lingering checks run before measuring.
    await sleep(DEADLINE_MS * 5 + 50)
    const snapshot = inspect()
    process.send({
      heapUsed: heapAfterGc(),
      inflight: snapshot.inflight.length,
      lingering: snapshot.lingering.length,
      counters: snapshot.counters,
      warnings,
    })
  } else if (message === 'exit') {
    process.exit(0)
  }
})
// Never outlive the driver: if it goes away, so does this server.
process.on('disconnect', () => process.exit(0))
process.send({ ready: true, port, node: process.version })
