import { getEventListeners } from 'node:events'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { all, createPool, createScope, TaskGroup } from '../src/index.js'

// These tests create hundreds of thousands of short-lived objects under one long-lived parent and
// compare the heap after a full GC with the heap after a warm-up round. A link, listener or timer
// left behind per child costs hundreds of bytes: 200,000 of them would be tens of megabytes.
const gc = (globalThis as { gc?: () => void }).gc
const HEAP_TOLERANCE = 3 * 1024 * 1024

function heapAfterGc(): number {
  if (gc === undefined) throw new Error('run with --expose-gc (vitest.config.ts sets it)')
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

async function heapGrowth(warmup: () => unknown, run: () => unknown): Promise<number> {
  await warmup()
  const base = heapAfterGc()
  await run()
  return heapAfterGc() - base
}

const warnings: Error[] = []
const onWarning = (warning: Error) => warnings.push(warning)
beforeAll(() => {
  process.on('warning', onWarning)
})
afterAll(() => {
  process.off('warning', onWarning)
})

describe('nothing leaks', () => {
  it('200,000 child scopes created and cancelled under one long-lived parent leave the heap flat', async () => {
    const parent = createScope({ timeout: 600_000 })
    const cycle = (count: number) => {
      for (let i = 0; i < count; i++) {
        const child = parent.child({ timeout: 30_000 })
        child.signal // materialise the controller, the expensive case
        child.cancel()
      }
    }
    const growth = await heapGrowth(
      () => cycle(10_000),
      () => cycle(200_000),
    )
    expect(growth).toBeLessThan(HEAP_TOLERANCE)
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
    parent.cancel()
  })

  it("200,000 scopes following a long-lived scope's signal leave no listener and a flat heap", async () => {
    const parent = createScope()
    const cycle = (count: number) => {
      for (let i = 0; i < count; i++) createScope({ signal: parent.signal, timeout: 30_000 }).cancel()
    }
    const growth = await heapGrowth(
      () => cycle(10_000),
      () => cycle(200_000),
    )
    expect(growth).toBeLessThan(HEAP_TOLERANCE)
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
  })

  it('200,000 scopes following a plain AbortSignal remove their listener when they end', async () => {
    const controller = new AbortController()
    const cycle = (count: number) => {
      for (let i = 0; i < count; i++) {
        const scope = createScope({ signal: controller.signal })
        if (i % 100 === 0) expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1)
        scope.cancel()
      }
    }
    const growth = await heapGrowth(
      () => cycle(10_000),
      () => cycle(200_000),
    )
    expect(growth).toBeLessThan(HEAP_TOLERANCE)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
  })

  it('50,000 fan-outs with all() and TaskGroup under one long-lived scope leave the heap flat', async () => {
    const scope = createScope()
    const fanOut = (count: number) =>
      scope.run(async () => {
        for (let i = 0; i < count; i++) {
          await all([async () => 1, (signal) => signal.aborted, async () => 3])
          const group = new TaskGroup({ limit: 2 })
          group.go(async () => 1)
          group.go(async () => 2)
          group.go(async () => 3)
          await group.wait()
        }
      })
    const growth = await heapGrowth(
      () => fanOut(5_000),
      () => fanOut(50_000),
    )
    expect(growth).toBeLessThan(HEAP_TOLERANCE)
    expect(getEventListeners(scope.signal, 'abort')).toHaveLength(0)
    scope.cancel()
  })

  it('50,000 pool runs, a third of them aborted while queued, leave no listener and a flat heap', async () => {
    const pool = createPool({ concurrency: 4 })
    const caller = new AbortController()
    const churn = async (count: number) => {
      for (let i = 0; i < count; i += 12) {
        const batch: Promise<unknown>[] = []
        const leaving = new AbortController()
        for (let j = 0; j < 12; j++) {
          const signal = j % 3 === 0 ? leaving.signal : caller.signal
          batch.push(pool.run(async () => j, { signal }).catch(() => undefined))
        }
        leaving.abort()
        await Promise.all(batch)
      }
    }
    const growth = await heapGrowth(
      () => churn(5_000),
      () => churn(50_000),
    )
    expect(growth).toBeLessThan(HEAP_TOLERANCE)
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0)
    expect([pool.active, pool.queued]).toEqual([0, 0])
  })
})
