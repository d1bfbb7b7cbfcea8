import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { createWorkerPool, inspect, type WorkerPool } from '@tether/core'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { loopbackServers } from './support/http.js'

// Synchronous work that ignores every signal, moved to a worker thread: the request is answered at
// its deadline, the thread is stopped there (its spin stops, the CPU is free again), other requests
// are served meanwhile, and the pool serves the next task. Real servers on loopback, real threads.

const WORKER_FILE = new URL('../packages/core/test/fixtures/workers/cpu.mjs', import.meta.url)
const DEADLINE = 300
const SPIN = 4_000

const servers = loopbackServers()
const closers: Array<() => Promise<unknown>> = []
afterEach(async () => {
  await servers.closeAll()
  for (const close of closers.splice(0).reverse()) await close()
})

type Start = (workers: WorkerPool) => Promise<string>

// Both apps: GET /render?ms=N spins N ms in a worker thread; GET /ping answers at once.
const frameworks: Array<[string, Start]> = [
  [
    'Express',
    async (workers) => {
      const app = express()
      app.use(tetherExpress({ timeout: DEADLINE, status: 504, logger: false }))
      app.get('/render', async (req, res) => {
        res.json(await workers.run({ ms: Number(req.query.ms) }))
      })
      app.get('/ping', (_req, res) => {
        res.json({ pong: true })
      })
      return servers.listen(app.listen(0, '127.0.0.1'))
    },
  ],
  [
    'Fastify',
    async (workers) => {
      const app = Fastify()
      await app.register(tetherFastify, { timeout: DEADLINE, status: 504, logger: false })
      app.get<{ Querystring: { ms: string } }>('/render', (request) => workers.run({ ms: Number(request.query.ms) }))
      app.get('/ping', async () => ({ pong: true }))
      await app.listen({ port: 0, host: '127.0.0.1' })
      closers.push(() => app.close())
      return servers.listen(app.server as Server)
    },
  ],
]

/** CPU time (user + system, every thread of the process) in ms. */
const cpuMs = () => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1_000
}

async function timed(url: string): Promise<{ status: number; ms: number }> {
  const began = performance.now()
  const response = await fetch(url)
  await response.arrayBuffer()
  return { status: response.status, ms: performance.now() - began }
}

describe.each(frameworks)('%s: a handler whose work runs in a worker thread', (_name, start) => {
  it('is answered at its deadline while the work would spin for seconds; /ping is served meanwhile; the CPU goes idle; the pool serves the next task', async () => {
    // The spin adds to `progress` every few ms: proof of whether it still runs.
    const progress = new Int32Array(new SharedArrayBuffer(4))
    const workers = createWorkerPool({ filename: WORKER_FILE, concurrency: 1, workerData: { progress } })
    closers.push(() => workers.close())
    const url = await start(workers)
    await timed(`${url}/render?ms=1`) // a thread and the route are warm
    const abortedBefore = inspect().counters.workerAborted

    const slow = timed(`${url}/render?ms=${SPIN}`)
    await sleep(50)
    const duringFrom = { cpu: cpuMs(), at: performance.now() }
    const ping = await timed(`${url}/ping`)
    await sleep(Math.max(0, 250 - (performance.now() - duringFrom.at) - 50))
    const during = (cpuMs() - duringFrom.cpu) / (performance.now() - duringFrom.at)

    const answered = await slow
    expect(answered.status).toBe(504)
    // About the deadline: generous for a loaded machine, and far below the 4 s the work would take.
    expect(answered.ms).toBeLessThan(2_000)
    expect(answered.ms).toBeGreaterThanOrEqual(DEADLINE - 5)
    expect(ping.status).toBe(200)
    // The event loop is free: run inline, the spin would have held this answer for ~4 s.
    expect(ping.ms).toBeLessThan(1_000)

    // The spin stopped at the deadline: its counter moved while it ran, and moves no more.
    await sleep(50)
    const spun = Atomics.load(progress, 0)
    expect(spun).toBeGreaterThan(0)
    await sleep(250)
    expect(Atomics.load(progress, 0)).toBe(spun)
    expect(inspect().counters.workerAborted).toBe(abortedBefore + 1)

    // Once the stopped thread's replacement is up (starting a thread is the only CPU spent after
    // the deadline: tens of ms), the process uses a small fraction of what it used while it spun.
    expect(await workers.run('up', { name: 'echo' })).toBe('up')
    const afterFrom = { cpu: cpuMs(), at: performance.now() }
    await sleep(400)
    const after = (cpuMs() - afterFrom.cpu) / (performance.now() - afterFrom.at)
    expect(during).toBeGreaterThan(0.3) // the thread did spin: most of a core while it ran
    expect(after).toBeLessThan(during / 4)

    const next = await timed(`${url}/render?ms=5`)
    expect(next.status).toBe(200)
    expect(workers.active).toBe(0)
    expect(workers.queued).toBe(0)
  })
})
