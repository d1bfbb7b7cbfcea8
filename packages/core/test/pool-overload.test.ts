import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPool, createScope, inspect, isPoolOverloaded, type Pool, PoolOverloadedError } from '../src/index.js'

// The clock is faked (Date, performance and timers), so service times and waits are exact and
// nothing here depends on how fast the machine runs.
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] })
})
afterEach(() => {
  vi.useRealTimers()
})

function deferred() {
  let resolve!: () => void
  const promise = new Promise<void>((res) => {
    resolve = res
  })
  return { promise, resolve }
}

/** A task that takes `ms` of (fake) time. */
const takes = (ms: number) => () => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A caller's signal with a deadline `ms` from now (a request's budget). */
const budget = (ms: number) => ({ signal: createScope({ timeout: ms }).signal })

/** Lets the pool observe one 100 ms run of a queued caller with a deadline. */
async function observeServiceTime(pool: Pool): Promise<void> {
  const first = pool.run(takes(100))
  const second = pool.run(takes(100), budget(10_000))
  await vi.advanceTimersByTimeAsync(200)
  await Promise.all([first, second])
  expect(pool.serviceTime).toBe(100)
}

describe('createPool: deadline-aware overload policy', () => {
  it('measures the service time only from queued callers with a deadline', async () => {
    const pool = createPool({ concurrency: 1 })
    const runs = [pool.run(takes(100)), pool.run(takes(100)), pool.run(takes(100), budget(10_000))]
    await vi.advanceTimersByTimeAsync(200)
    expect(pool.serviceTime).toBe(0) // two runs done, neither a queued caller with a deadline
    await vi.advanceTimersByTimeAsync(100)
    await Promise.all(runs)
    expect(pool.serviceTime).toBe(100)
  })

  it('sheds at once a caller whose deadline cannot cover the work queued ahead of it, and queues one whose deadline can', async () => {
    const pool = createPool({ concurrency: 1 })
    await observeServiceTime(pool)
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    const ahead = [pool.run(takes(100)), pool.run(takes(100))]
    const shedBefore = inspect().counters.shed
    const started: string[] = []

    // Two queued and one running, at 100 ms each, then its own run: 400 ms of work before it ends.
    const tooShort = pool.run(() => started.push('too short'), budget(350))
    const error = await tooShort.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PoolOverloadedError)
    expect(isPoolOverloaded(error)).toBe(true)
    expect((error as Error).message).toMatch(/cannot finish before the caller's deadline/)
    expect(inspect().counters.shed).toBe(shedBefore + 1)
    expect(pool.queued).toBe(2)

    const enough = pool.run(() => started.push('enough'), budget(450))
    expect(pool.queued).toBe(3)
    gate.resolve()
    await vi.advanceTimersByTimeAsync(200)
    await Promise.all([running, ...ahead, enough])
    expect(started).toEqual(['enough'])
  })

  it('never starts a queued caller whose remaining budget no longer covers one service time, and answers it at once', async () => {
    const pool = createPool({ concurrency: 1 })
    await observeServiceTime(pool)
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    let started = false
    const late = pool.run(() => {
      started = true
    }, budget(250))
    expect(pool.queued).toBe(1) // 200 ms of work ahead fits a 250 ms budget
    // The running task holds its slot longer than usual (not long enough for the queue to stand).
    await vi.advanceTimersByTimeAsync(160)
    const shedBefore = inspect().counters.shed
    gate.resolve()
    const error = await late.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PoolOverloadedError)
    expect((error as Error).message).toMatch(/no longer leaves time/)
    expect(started).toBe(false)
    expect(inspect().counters.shed).toBe(shedBefore + 1)
    await running
    expect({ active: pool.active, queued: pool.queued }).toEqual({ active: 0, queued: 0 })
  })

  it('under a standing queue starts the newest caller with a deadline first, and keeps FIFO among callers without one', async () => {
    const pool = createPool({ concurrency: 1 })
    await observeServiceTime(pool)
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    const order: string[] = []
    const call = (name: string, options?: { signal: AbortSignal }) =>
      pool.run(() => {
        order.push(name)
      }, options)
    const calls = [
      call('n1'),
      call('d1', budget(10_000)),
      call('n2'),
      call('d2', budget(10_000)),
      call('n3'),
      call('d3', budget(10_000)),
    ]
    // The oldest has now waited three service times: the queue is standing, not a burst.
    await vi.advanceTimersByTimeAsync(300)
    gate.resolve()
    await Promise.all([running, ...calls])
    // d3, the newest, goes first; after it the newest is n3, which has no deadline and is never
    // moved ahead, so the rest leave from the front, in the order they came.
    expect(order).toEqual(['d3', 'n1', 'd1', 'n2', 'd2', 'n3'])
  })

  it('under a standing queue answers the oldest caller at once when the callers queued after it leave it no time', async () => {
    const pool = createPool({ concurrency: 1 })
    await observeServiceTime(pool)
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    const order: string[] = []
    const call = (name: string) =>
      pool.run(() => {
        order.push(name)
      }, budget(1_000))
    const oldest = call('oldest')
    await vi.advanceTimersByTimeAsync(300) // the queue stands: newer callers will go first
    const newer = ['d1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7'].map(call)
    expect(pool.queued).toBe(8)
    const shedBefore = inspect().counters.shed
    gate.resolve()
    // 700 ms left, and seven newer callers plus its own run need 800 ms: answered now, at 300 ms,
    // rather than with a deadline error at 1,000 ms.
    const error = await oldest.catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PoolOverloadedError)
    expect((error as Error).message).toMatch(/newer callers go first/)
    expect(inspect().counters.shed).toBe(shedBefore + 1)
    await Promise.all([running, ...newer])
    // With the oldest gone, the rest came together and have not waited: a burst, served in order.
    expect(order).toEqual(['d1', 'd2', 'd3', 'd4', 'd5', 'd6', 'd7'])
  })

  it('serves a burst first come, first served: the queue has not waited long enough to stand', async () => {
    const pool = createPool({ concurrency: 1 })
    await observeServiceTime(pool)
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    const order: string[] = []
    const calls = ['d1', 'd2', 'd3'].map((name) =>
      pool.run(() => {
        order.push(name)
      }, budget(10_000)),
    )
    await vi.advanceTimersByTimeAsync(50)
    gate.resolve()
    await Promise.all([running, ...calls])
    expect(order).toEqual(['d1', 'd2', 'd3'])
  })

  it('with deadlineAware: false, queues every caller FIFO and sheds only on a full queue', async () => {
    const pool = createPool({ concurrency: 1, deadlineAware: false })
    await vi.advanceTimersByTimeAsync(0)
    const warm = [pool.run(takes(100)), pool.run(takes(100), budget(10_000))]
    await vi.advanceTimersByTimeAsync(200)
    await Promise.all(warm)
    expect(pool.serviceTime).toBe(0)
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    const order: string[] = []
    const calls = ['d1', 'd2', 'd3'].map((name) =>
      pool.run(() => {
        order.push(name)
      }, budget(10_000)),
    )
    const tight = pool.run(() => order.push('tight'), budget(5_000))
    expect(pool.queued).toBe(4)
    await vi.advanceTimersByTimeAsync(1_000)
    gate.resolve()
    await Promise.all([running, ...calls, tight])
    expect(order).toEqual(['d1', 'd2', 'd3', 'tight'])
  })

  it('refuses a deadlineAware that is not a boolean, naming it', () => {
    expect(() => createPool({ concurrency: 1, deadlineAware: 'yes' as never })).toThrow(TypeError)
    expect(() => createPool({ concurrency: 1, deadlineAware: 1 as never })).toThrow(/`deadlineAware`.*1/)
  })
})
