import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createPool, inspect, type Pool } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { eventually, send } from './support/http.js'

// What each request's work takes. The policy judges by what it measures, so the figure only has to
// dwarf a loopback round trip; the assertions below hold however slowly the machine runs it.
const WORK_MS = 150

async function serve(framework: 'express' | 'fastify', pool: Pool) {
  // How long each run took, as the task itself saw it. Not WORK_MS exactly: Node counts a timer
  // from the event loop's cached clock, which a busy loop leaves milliseconds behind, so a 150 ms
  // sleep can end 146 ms after it was called.
  const runs: number[] = []
  const work = () =>
    pool.run(async (signal) => {
      const began = performance.now()
      const result = await sleep(WORK_MS, { done: true }, { signal })
      runs.push(performance.now() - began)
      return result
    })
  if (framework === 'express') {
    const app = express()
    app.use(tetherExpress({ timeout: 10_000, logger: false }))
    app.get('/work', async (_req, res) => {
      res.json(await work())
    })
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/work`,
      runs,
      close: () => {
        server.closeAllConnections()
        return new Promise((resolve) => server.close(resolve))
      },
    }
  }
  const app = Fastify()
  await app.register(tetherFastify, { timeout: 10_000, logger: false, grace: 0 })
  app.get('/work', async () => work())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/work`,
    runs,
    close: () => app.close(),
  }
}

describe('a pool in front of overloaded work, over HTTP', () => {
  it.each(['express', 'fastify'] as const)(
    '%s: a caller whose budget cannot cover the queue ahead is answered 503 with Retry-After at once, not at its deadline; the others are served',
    async (framework) => {
      const pool = createPool({ concurrency: 1 })
      const { url, runs, close } = await serve(framework, pool)
      try {
        // Two at once: the second queues, and its run (its caller has a deadline) is measured.
        const warm = await Promise.all([send(url), send(url)])
        expect(warm.map((r) => r.status)).toEqual([200, 200])
        // The pool measured a whole run: from before the task began to after it settled.
        expect(pool.serviceTime).toBeGreaterThanOrEqual(Math.min(...runs))

        // One running and two queued: at least three service times before a newcomer could start.
        const served = [send(url), send(url), send(url)]
        await eventually(() => pool.queued === 2, 5_000, 'two requests queued')
        const shedBefore = inspect().counters.shed
        // Its budget (250 ms) is less than two service times (about 300 ms): whichever order the pool
        // serves in, it cannot start and finish its own run in time.
        const hopeless = await send(url, { headers: { 'x-request-timeout-ms': '250' } })
        expect(hopeless.status).toBe(503)
        // The pool's answer, not the deadline's: only a shed carries Retry-After.
        expect(hopeless.headers['retry-after']).toBe('1')
        expect(hopeless.body).toMatch(/the work queued ahead cannot finish|TETHER_POOL_OVERLOADED/)
        expect(inspect().counters.shed).toBe(shedBefore + 1)

        expect((await Promise.all(served)).map((r) => r.status)).toEqual([200, 200, 200])
        expect([pool.active, pool.queued]).toEqual([0, 0])
        await eventually(() => inspect().inflight.length === 0, 5_000, 'no request in flight')
        await assertNoLingering()
      } finally {
        await close()
      }
    },
  )
})
