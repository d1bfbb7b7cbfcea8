import diagnostics from 'node:diagnostics_channel'
import { getEventListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import client from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createScope,
  createWorkerPool,
  inspect,
  isDeadlineExceeded,
  isPoolOverloaded,
  registerMetrics,
  SHED_CHANNEL,
  type ShedMessage,
  type WorkerPool,
  type WorkerPoolOptions,
} from '../src/index.js'

// Real worker threads (piscina) running the fixtures in ./fixtures/workers: CPU-bound functions
// that ignore every signal, the work a deadline alone cannot stop.

const fixture = (name: string) => new URL(`./fixtures/workers/${name}`, import.meta.url)
const pools: WorkerPool[] = []

function pool(options: Partial<WorkerPoolOptions> = {}): WorkerPool {
  const created = createWorkerPool({ filename: fixture('cpu.mjs'), concurrency: 1, ...options })
  pools.push(created)
  return created
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((created) => created.close()))
})

async function eventually(predicate: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !predicate(); waited += 5) {
    if (waited > 2_000) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

// `process.features.typescript` is 'strip' or 'transform' where Node runs TypeScript as it is.
const { typescript } = process.features as { typescript?: string | false }
const stripsTypes = typeof typescript === 'string'

/** Shared memory the spin fixture counts its starts in: proof of whether a task ever ran. */
const startCounter = () => new Int32Array(new SharedArrayBuffer(4))

interface Spun {
  ms: number
  threadId: number
}

describe('createWorkerPool: options', () => {
  it('refuses a missing, relative or absent worker file, naming `filename` and the value', () => {
    expect(() => createWorkerPool(undefined as never)).toThrow(TypeError)
    expect(() => createWorkerPool({} as never)).toThrow(
      /`filename` must be an absolute path or a file: URL, received undefined/,
    )
    expect(() => createWorkerPool({ filename: './cpu.mjs' })).toThrow(/`filename`.*'\.\/cpu\.mjs'/)
    expect(() => createWorkerPool({ filename: fixture('missing.mjs') })).toThrow(
      /`filename` must name an existing file/,
    )
    expect(() => createWorkerPool({ filename: fileURLToPath(fixture('')) })).toThrow(/existing file/)
    expect(() => createWorkerPool({ filename: 42 as never })).toThrow(TypeError)
  })

  it('validates the other options like createPool, and refuses unknown ones', () => {
    const filename = fixture('cpu.mjs')
    expect(() => createWorkerPool({ filename, concurrency: 0 })).toThrow(RangeError)
    expect(() => createWorkerPool({ filename, concurrency: 0 })).toThrow(/`concurrency`.*received 0/)
    // Threads are real: an unbounded number of them is refused, unlike createPool's Infinity.
    expect(() => createWorkerPool({ filename, concurrency: Number.POSITIVE_INFINITY })).toThrow(/`concurrency`/)
    expect(() => createWorkerPool({ filename, concurrency: '2' as never })).toThrow(TypeError)
    expect(() => createWorkerPool({ filename, maxQueue: -1 })).toThrow(/`maxQueue`/)
    expect(() => createWorkerPool({ filename, retryAfter: 1.5 })).toThrow(/`retryAfter`/)
    expect(() => createWorkerPool({ filename, deadlineAware: 'yes' as never })).toThrow(/`deadlineAware`/)
    expect(() => createWorkerPool({ filename, concurency: 2 } as never)).toThrow(
      /`concurency`.*did you mean `concurrency`/,
    )
  })

  it("validates run()'s options", () => {
    const workers = pool()
    expect(() => workers.run(1, { nam: 'echo' } as never)).toThrow(/`nam`.*did you mean `name`/)
    expect(() => workers.run(1, { name: '' })).toThrow(/`name`/)
    expect(() => workers.run(1, { name: 7 as never })).toThrow(/`name`.*received 7/)
    expect(() => workers.run(1, { signal: {} as never })).toThrow(/`signal` must be an AbortSignal/)
  })
})

describe('createWorkerPool: running', () => {
  it("runs an ES module's default export, or the export `name` says, and resolves with its result", async () => {
    const workers = pool()
    const spun = await workers.run<Spun>({ ms: 1 })
    expect(spun.ms).toBe(1)
    expect(spun.threadId).toBeGreaterThan(0)
    expect(await workers.run({ a: [1, 2] }, { name: 'echo' })).toEqual({ a: [1, 2] })
  })

  it('runs a CommonJS worker file: module.exports, and a function property of it', async () => {
    const workers = pool({ filename: fileURLToPath(fixture('cpu.cjs')) })
    expect(await workers.run({ ms: 1 })).toMatchObject({ format: 'cjs' })
    expect(await workers.run('x', { name: 'echo' })).toBe('x')
  })

  // Node strips types by default from 22.18 and 23.6 (24 and 26 included); 22.6 to 22.17 need
  // --experimental-strip-types, which worker threads inherit from the process.
  it.runIf(stripsTypes)(
    'runs TypeScript worker files as they are where Node strips types: .ts (ESM) and .cts (CommonJS)',
    async () => {
      const ts = pool({ filename: fixture('cpu.ts') })
      expect(await ts.run({ ms: 1 })).toMatchObject({ format: 'ts' })
      expect(await ts.run(5, { name: 'echo' })).toBe(5)
      const cts = pool({ filename: fixture('cpu.cts') })
      expect(await cts.run({ ms: 1 })).toMatchObject({ format: 'cts' })
    },
  )

  it("hands every thread `workerData`, which piscina's wrapper pattern uses to load another module", async () => {
    const direct = pool({ workerData: { region: 'eu' } })
    expect(await direct.run(undefined, { name: 'data' })).toEqual({ region: 'eu' })
    const wrapped = pool({ filename: fixture('wrapper.mjs'), workerData: { module: fixture('cpu.mjs').href } })
    expect(await wrapped.run('through the wrapper', { name: 'echo' })).toBe('through the wrapper')
    expect(await wrapped.run<Spun>({ ms: 1 })).toMatchObject({ ms: 1 })
  })

  it('rejects with what the worker function threw, and keeps serving', async () => {
    const workers = pool()
    const error = await workers.run('bad input', { name: 'fail' }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).message).toBe('bad input')
    expect(await workers.run('next', { name: 'echo' })).toBe('next')
  })

  it('rejects data that cannot be copied to a thread (a function) with DataCloneError, and keeps serving', async () => {
    const workers = pool()
    const error = await workers.run(() => 1, { name: 'echo' }).catch((e: unknown) => e)
    expect((error as Error).name).toBe('DataCloneError')
    expect(workers.active).toBe(0)
    expect(await workers.run('next', { name: 'echo' })).toBe('next')
  })

  it('survives a worker file that throws while loading: run() rejects with its error, and nothing crashes', async () => {
    const warnings: string[] = []
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
    process.on('warning', onWarning)
    try {
      const workers = pool({ filename: fixture('broken.mjs') })
      await expect(workers.run({ ms: 1 })).rejects.toThrow(/broken worker file/)
      await expect(workers.run({ ms: 1 })).rejects.toThrow(/broken worker file/)
      await eventually(() => warnings.length > 0, 'a warning')
      expect(warnings[0]).toMatch(/^TetherWorkerWarning: .*broken\.mjs failed: Error: broken worker file/)
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('lists itself in inspect() with its threads and tasks, and leaves the list when closed', async () => {
    const workers = pool({ concurrency: 2 })
    const listed = () => inspect().workerPools.filter((entry) => entry.filename === fileURLToPath(fixture('cpu.mjs')))
    const running = workers.run({ ms: 300 })
    const queued = [workers.run({ ms: 1 }), workers.run({ ms: 1 })]
    expect(listed()).toEqual([
      { filename: workers.filename, concurrency: 2, threads: expect.any(Number), active: 2, queued: 1 },
    ])
    await Promise.all([running, ...queued])
    expect(listed()[0]).toMatchObject({ active: 0, queued: 0 })
    expect(listed()[0]?.threads).toBeGreaterThanOrEqual(1)
    await workers.close()
    expect(listed()).toEqual([])
    await expect(workers.run({ ms: 1 })).rejects.toThrow(/worker pool is closed/)
  })

  it('exposes its gauges and counters as Prometheus metrics', async () => {
    const registry = new client.Registry()
    const metrics = registerMetrics({ register: registry })
    try {
      const workers = pool({ concurrency: 1 })
      const running = workers.run({ ms: 200 })
      const queued = workers.run({ ms: 1 })
      const text = await registry.metrics()
      const label = `filename="${workers.filename}"`
      expect(text).toContain(`tether_worker_pool_active{${label}} 1`)
      expect(text).toContain(`tether_worker_pool_queued{${label}} 1`)
      expect(text).toMatch(
        new RegExp(`tether_worker_pool_threads\\{${label.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\} [1-9]`),
      )
      expect(text).toContain('# TYPE tether_worker_tasks_aborted_total counter')
      expect(text).toContain('# TYPE tether_worker_pool_shed_total counter')
      await Promise.all([running, queued])
    } finally {
      metrics.unregister()
    }
  })
})

describe('createWorkerPool: when the caller goes', () => {
  it("never starts a queued task whose caller aborts, and rejects it at once with the signal's reason", async () => {
    const workers = pool({ concurrency: 1 })
    const started = startCounter()
    const running = workers.run({ ms: 300, started })
    const caller = new AbortController()
    const queued = workers.run({ ms: 300, started }, { signal: caller.signal })
    expect(workers.queued).toBe(1)
    const reason = new Error('caller left')
    caller.abort(reason)
    expect(await queued.catch((e: unknown) => e)).toBe(reason)
    expect(workers.queued).toBe(0)
    await running
    await sleep(50)
    expect(Atomics.load(started, 0)).toBe(1)
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0)
  })

  it("stops a running task's thread when its caller aborts: the same reason, at once, and a new thread serves the next task", async () => {
    const workers = pool({ concurrency: 1 })
    const { threadId: first } = await workers.run<Spun>({ ms: 1 })
    const abortedBefore = inspect().counters.workerAborted
    const started = startCounter()
    const caller = new AbortController()
    const began = performance.now()
    const running = workers.run({ ms: 10_000, started }, { signal: caller.signal })
    while (Atomics.load(started, 0) === 0 && performance.now() - began < 5_000) await sleep(5)
    expect(Atomics.load(started, 0)).toBe(1)
    const reason = new Error('caller left')
    const abortedAt = performance.now()
    caller.abort(reason)
    expect(await running.catch((e: unknown) => e)).toBe(reason)
    // Generous for a loaded machine, and far below the 10 s the task would have spun.
    expect(performance.now() - abortedAt).toBeLessThan(1_000)
    expect(inspect().counters.workerAborted).toBe(abortedBefore + 1)
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0)
    const next = await workers.run<Spun>({ ms: 1 })
    expect(next.threadId).not.toBe(first)
    expect(workers.active).toBe(0)
  })

  it("binds to currentScope() by default: the scope's deadline stops the thread, and run() rejects with the scope's reason", async () => {
    const workers = pool({ concurrency: 1 })
    await workers.run({ ms: 1 }) // a thread is up
    const scope = createScope({ timeout: 200 })
    const began = performance.now()
    const error = await scope.run(() => workers.run({ ms: 10_000 })).catch((e: unknown) => e)
    expect(isDeadlineExceeded(error)).toBe(true)
    expect(error).toBe(scope.signal.reason)
    expect(performance.now() - began).toBeLessThan(2_000)
    expect(await workers.run('after', { name: 'echo' })).toBe('after')
  })

  it('rejects at once, without starting, a caller whose signal has already aborted', async () => {
    const workers = pool()
    const started = startCounter()
    const reason = new Error('gone before')
    await expect(workers.run({ ms: 1, started }, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(Atomics.load(started, 0)).toBe(0)
  })
})

describe('createWorkerPool: overload', () => {
  it('sheds beyond maxQueue with PoolOverloadedError, counted as a worker-pool shed and published on the shed channel', async () => {
    const workers = pool({ concurrency: 1, maxQueue: 0 })
    const messages: ShedMessage[] = []
    const listener = (message: unknown) => messages.push(message as ShedMessage)
    diagnostics.subscribe(SHED_CHANNEL, listener)
    try {
      const { shed, workerShed } = inspect().counters
      const running = workers.run({ ms: 100 })
      const scope = createScope()
      const error = await scope.run(() => workers.run({ ms: 1 })).catch((e: unknown) => e)
      expect(isPoolOverloaded(error)).toBe(true)
      expect(inspect().counters.workerShed).toBe(workerShed + 1)
      expect(inspect().counters.shed).toBe(shed)
      expect(messages).toEqual([{ source: 'worker-pool', error, scope, requestScope: undefined }])
      await running
    } finally {
      diagnostics.unsubscribe(SHED_CHANNEL, listener)
    }
  })

  it("shares createPool's deadline-aware policy: a caller whose deadline cannot cover the work ahead is shed at once", async () => {
    const workers = pool({ concurrency: 1 })
    // A queued caller with a deadline teaches the pool its service time (about 150 ms).
    const scope = createScope({ timeout: 10_000 })
    await Promise.all([workers.run({ ms: 150 }), workers.run({ ms: 150 }, { signal: scope.signal })])
    const running = workers.run({ ms: 300 })
    const started = startCounter()
    const began = performance.now()
    // One task runs: its rest and this caller's own run take two service times, more than 100 ms.
    const error = await workers
      .run({ ms: 1, started }, { signal: createScope({ timeout: 100 }).signal })
      .catch((e: unknown) => e)
    expect(isPoolOverloaded(error)).toBe(true)
    expect((error as Error).message).toMatch(/cannot finish before the caller's deadline/)
    expect(performance.now() - began).toBeLessThan(50)
    await running
    expect(Atomics.load(started, 0)).toBe(0)
    scope.cancel()
  })
})
