import { AsyncLocalStorage } from 'node:async_hooks'
import { getEventListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { createPool, createScope, inspect, isPoolOverloaded, PoolOverloadedError } from '../src/index.js'

function deferred<T = void>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((res) => {
    resolve = res
  })
  return { promise, resolve }
}

// The first group of tests is ported from p-limit's own test.js, with its timing assertions
// turned into order and count assertions.
describe('createPool (p-limit test.js)', () => {
  it('concurrency: 1 runs tasks one after another, resolving each with its value', async () => {
    const pool = createPool({ concurrency: 1 })
    const log: string[] = []
    const input: Array<[number, number]> = [
      [10, 30],
      [20, 20],
      [30, 10],
    ]
    const results = await Promise.all(
      input.map(([value, ms]) =>
        pool.run(async () => {
          log.push(`start ${value}`)
          await sleep(ms)
          log.push(`end ${value}`)
          return value
        }),
      ),
    )
    expect(results).toEqual([10, 20, 30])
    expect(log).toEqual(['start 10', 'end 10', 'start 20', 'end 20', 'start 30', 'end 30'])
  })

  it('concurrency: 5 never runs more than five of 100 tasks at once', async () => {
    const concurrency = 5
    const pool = createPool({ concurrency })
    let running = 0
    let maxRunning = 0
    await Promise.all(
      Array.from({ length: 100 }, (_, index) =>
        pool.run(async () => {
          running++
          maxRunning = Math.max(maxRunning, running)
          await sleep(1 + (index % 7))
          running--
        }),
      ),
    )
    expect(maxRunning).toBe(concurrency)
    expect(pool.active).toBe(0)
  })

  it("propagates the caller's async execution context, for queued tasks too", async () => {
    const pool = createPool({ concurrency: 2 })
    const store = new AsyncLocalStorage<{ id: number }>()
    const mismatches: Array<[number, number | undefined]> = []
    const check = async (id: number) => {
      await Promise.resolve()
      const seen = store.getStore()?.id
      if (seen !== id) mismatches.push([id, seen])
    }
    await Promise.all(Array.from({ length: 100 }, (_, id) => store.run({ id }, () => pool.run(() => check(id)))))
    expect(mismatches).toEqual([])
  })

  it('accepts a function that returns no promise', async () => {
    const pool = createPool({ concurrency: 1 })
    await expect(pool.run(() => null)).resolves.toBeNull()
  })

  it('continues after a synchronous throw', async () => {
    const pool = createPool({ concurrency: 1 })
    let ran = false
    const failing = pool.run(() => {
      throw new Error('err')
    })
    const next = pool.run(() => {
      ran = true
    })
    await expect(failing).rejects.toThrow('err')
    await next
    expect(ran).toBe(true)
    expect(pool.active).toBe(0)
  })

  it("passes the caller's signal to the task (p-limit's additional arguments)", async () => {
    const pool = createPool({ concurrency: 1 })
    const controller = new AbortController()
    await expect(pool.run((signal) => signal, { signal: controller.signal })).resolves.toBe(controller.signal)
  })

  it('does not ignore errors', async () => {
    const pool = createPool({ concurrency: 1 })
    const error = new Error('🦄')
    const promises = [
      pool.run(() => sleep(3)),
      pool.run(async () => {
        await sleep(8)
        throw error
      }),
      pool.run(() => sleep(5)),
    ]
    await expect(Promise.all(promises)).rejects.toBe(error)
  })

  it('counts active and queued tasks', async () => {
    const pool = createPool({ concurrency: 5 })
    expect([pool.active, pool.queued]).toEqual([0, 0])
    const gate = deferred()
    const first = pool.run(() => gate.promise)
    expect([pool.active, pool.queued]).toEqual([1, 0])
    gate.resolve()
    await first
    expect([pool.active, pool.queued]).toEqual([0, 0])

    const gates = Array.from({ length: 8 }, () => deferred())
    const runs = gates.map((g) => pool.run(() => g.promise))
    expect([pool.active, pool.queued]).toEqual([5, 3])
    for (const g of gates.slice(0, 5)) g.resolve()
    await Promise.all(runs.slice(0, 5))
    await sleep(0)
    expect([pool.active, pool.queued]).toEqual([3, 0])
    for (const g of gates.slice(5)) g.resolve()
    await Promise.all(runs)
    expect([pool.active, pool.queued]).toEqual([0, 0])
  })

  it('throws on an invalid concurrency: 0, negative, fractional, NaN, a string, true, missing', () => {
    for (const concurrency of [0, -1, 1.2, Number.NaN]) {
      expect(() => createPool({ concurrency })).toThrow(RangeError)
      expect(() => createPool({ concurrency })).toThrow(/`concurrency`/)
    }
    for (const concurrency of ['4', true, undefined]) {
      expect(() => createPool({ concurrency } as never)).toThrow(TypeError)
      expect(() => createPool({ concurrency } as never)).toThrow(/`concurrency`/)
    }
    expect(() => createPool(undefined as never)).toThrow(/`concurrency`.*undefined/)
    expect(() => createPool({ concurrency: Number.POSITIVE_INFINITY })).not.toThrow()
  })
})

describe('createPool: callers who leave', () => {
  it('rejects a queued task whose signal aborts at once, with the reason; it leaves the queue and never starts', async () => {
    const pool = createPool({ concurrency: 1 })
    const gate = deferred()
    const running = pool.run(() => gate.promise)
    const controller = new AbortController()
    let started = false
    const queued = pool.run(
      () => {
        started = true
      },
      { signal: controller.signal },
    )
    const after = pool.run(() => 'after')
    expect(pool.queued).toBe(2)
    const reason = new Error('caller left')
    controller.abort(reason)
    expect(pool.queued).toBe(1)
    await expect(queued).rejects.toBe(reason)
    gate.resolve()
    await running
    await expect(after).resolves.toBe('after')
    expect(started).toBe(false)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
  })

  it('rejects at once, without starting, when the signal is already aborted', async () => {
    const pool = createPool({ concurrency: 1 })
    let started = false
    const reason = new Error('gone')
    await expect(
      pool.run(
        () => {
          started = true
        },
        { signal: AbortSignal.abort(reason) },
      ),
    ).rejects.toBe(reason)
    expect(started).toBe(false)
    expect(pool.active).toBe(0)
  })

  it("aborts a running task's signal when its caller's does", async () => {
    const pool = createPool({ concurrency: 1 })
    const controller = new AbortController()
    const reason = new Error('stop')
    const result = pool.run(
      (signal) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
      { signal: controller.signal },
    )
    controller.abort(reason)
    await expect(result).rejects.toBe(reason)
    expect(pool.active).toBe(0)
  })

  it('removes its abort listener from callers whose queued tasks ran', async () => {
    const pool = createPool({ concurrency: 1 })
    const controller = new AbortController()
    await Promise.all(Array.from({ length: 20 }, () => pool.run(() => sleep(1), { signal: controller.signal })))
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
  })

  it("uses the current scope's signal by default, and drops queued tasks when the scope ends", async () => {
    const pool = createPool({ concurrency: 1 })
    const gate = deferred()
    const blocker = pool.run(() => gate.promise)
    const scope = createScope()
    let seenSignal: AbortSignal | undefined
    let started = false
    const queued = scope.run(() =>
      pool.run(() => {
        started = true
      }),
    )
    const running = scope.run(() => pool.run((signal) => (seenSignal = signal)))
    scope.cancel()
    await expect(queued).rejects.toMatchObject({ name: 'CanceledError' })
    await expect(running).rejects.toMatchObject({ name: 'CanceledError' })
    expect(started).toBe(false)
    expect(seenSignal).toBeUndefined()
    gate.resolve()
    await blocker
    const inScope = createScope()
    await expect(inScope.run(() => pool.run((signal) => signal))).resolves.toBe(inScope.signal)
    inScope.cancel()
  })

  it('registers running tasks with the caller scope, so one still running when it ends is lingering', async () => {
    const pool = createPool({ concurrency: 2 })
    const scope = createScope()
    const gate = deferred()
    const run = scope.run(() => pool.run(() => gate.promise))
    scope.cancel()
    await new Promise((resolve) => setImmediate(resolve))
    expect(inspect().lingering.filter((task) => task.kind === 'pool')).toHaveLength(1)
    gate.resolve()
    await run
    expect(inspect().lingering.filter((task) => task.kind === 'pool')).toHaveLength(0)
  })
})

describe('createPool: overload', () => {
  it('sheds with PoolOverloadedError (503, Retry-After) once the queue is full, and counts it', async () => {
    const pool = createPool({ concurrency: 1, maxQueue: 2, retryAfter: 5 })
    const gate = deferred()
    const runs = [pool.run(() => gate.promise), pool.run(() => 1), pool.run(() => 2)]
    const shedBefore = inspect().counters.shed
    const shed = pool.run(() => 3)
    await expect(shed).rejects.toBeInstanceOf(PoolOverloadedError)
    const error = await shed.catch((e: unknown) => e)
    expect(isPoolOverloaded(error)).toBe(true)
    expect(error).toMatchObject({
      name: 'PoolOverloadedError',
      code: 'TETHER_POOL_OVERLOADED',
      statusCode: 503,
      headers: { 'retry-after': '5' },
    })
    expect(inspect().counters.shed).toBe(shedBefore + 1)
    expect(pool.queued).toBe(2)
    gate.resolve()
    await expect(Promise.all(runs)).resolves.toEqual([undefined, 1, 2])
  })

  it('with maxQueue 0, runs what fits and sheds the rest', async () => {
    const pool = createPool({ concurrency: 2, maxQueue: 0 })
    const gate = deferred()
    const a = pool.run(() => gate.promise)
    const b = pool.run(() => gate.promise)
    await expect(pool.run(() => 'c')).rejects.toBeInstanceOf(PoolOverloadedError)
    gate.resolve()
    await Promise.all([a, b])
  })

  it('rejects counts that are not safe integers, such as a Retry-After of 1e21', () => {
    expect(() => createPool({ concurrency: 1, retryAfter: 1e21 })).toThrow(/`retryAfter`/)
    expect(() => createPool({ concurrency: 2 ** 53 })).toThrow(/`concurrency`/)
  })

  it('rejects invalid maxQueue and retryAfter', () => {
    expect(() => createPool({ concurrency: 1, maxQueue: -1 })).toThrow(/`maxQueue`.*-1/)
    expect(() => createPool({ concurrency: 1, maxQueue: '3' as never })).toThrow(TypeError)
    expect(() => createPool({ concurrency: 1, retryAfter: 1.5 })).toThrow(/`retryAfter`/)
    expect(() => createPool({ concurrency: 1 }).run('task' as never)).toThrow(/task must be a function/)
  })
})
