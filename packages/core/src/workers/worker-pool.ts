import { statSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { isAbsolute } from 'node:path'
import { fileURLToPath } from 'node:url'
import type PiscinaPool from 'piscina'
import {
  checkBoolean,
  checkCount,
  checkOptionsObject,
  checkSignal,
  counters,
  neverAborted,
  type Pool,
  poolFor,
  received,
  shared,
} from '../primitives/index.js'

/** Options of {@link createWorkerPool}. Only `filename` is required. */
export interface WorkerPoolOptions {
  /**
   * The worker file: an absolute path or a `file:` URL (`new URL('./worker.mjs', import.meta.url)`).
   * An ES module (its default export, or the export `run()` names), a CommonJS module
   * (`module.exports` a function, or an object of them), or TypeScript where Node strips types
   * (`.ts`, `.mts`, `.cts`: see the README). Required.
   */
  readonly filename: string | URL
  /**
   * The most tasks running at once, one thread each: an integer ≥ 1. Synchronous work gains
   * nothing from more threads than cores.
   * @default os.availableParallelism()
   */
  readonly concurrency?: number
  /**
   * The most tasks waiting for a thread. Beyond it, `run()` rejects with `PoolOverloadedError` at
   * once (load shedding).
   * @default Infinity
   */
  readonly maxQueue?: number
  /**
   * Seconds a shed client should wait, sent as `Retry-After` by the adapters.
   * @default 1
   */
  readonly retryAfter?: number
  /**
   * The deadline-aware overload policy of {@link createPool}: callers whose deadline cannot cover
   * the work ahead of them are shed at once, and one whose turn comes too late is never started.
   * @default true
   */
  readonly deadlineAware?: boolean
  /**
   * A value every worker thread receives as `workerData` (`node:worker_threads`), cloned once per
   * thread: settings, or the path of the module a wrapper file should load.
   * @default undefined
   */
  readonly workerData?: unknown
}

const WORKER_POOL_OPTIONS = ['filename', 'concurrency', 'maxQueue', 'retryAfter', 'deadlineAware', 'workerData']

/** Options of {@link WorkerPool.run}. */
export interface WorkerRunOptions {
  /**
   * The worker file's export to call.
   * @default 'default' (the default export; a CommonJS module that exports a function: that function)
   */
  readonly name?: string
  /**
   * The caller's signal. If it aborts while the task is queued, the task never starts; while it
   * runs, its thread is stopped. Either way `run()` rejects with the signal's reason.
   * @default the signal of `currentScope()`, if there is one
   */
  readonly signal?: AbortSignal
}

const RUN_OPTIONS = ['name', 'signal']

/** A worker pool as listed by `inspect().workerPools`: its gauges. */
export interface WorkerPoolState {
  /** The worker file, as a path. */
  readonly filename: string
  readonly concurrency: number
  /** Worker threads alive now (a stopped thread is replaced). */
  readonly threads: number
  /** Tasks running now. */
  readonly active: number
  /** Tasks waiting for a thread. */
  readonly queued: number
}

/**
 * Synchronous work in worker threads, stopped when its caller goes: a task whose caller's signal
 * aborts never starts if it is queued, and has its thread stopped if it runs.
 */
export interface WorkerPool {
  /**
   * Runs the worker file's export `name` (default: its default export) on `data` in a worker
   * thread, when one is free. `data` and the result are copied between threads (the structured
   * clone algorithm: no functions, no class instances beyond the built-in ones).
   *
   * A queued task whose caller's signal aborts never starts; a running one has its thread stopped
   * at once (its CPU is free again, and a fresh thread takes its place); either way `run()` rejects
   * with the signal's reason, the same object.
   *
   * @param data - what the worker's function receives
   * @param options - `name`, `signal`
   * @returns what the worker's function returned (or resolved to)
   * @throws (rejects) `PoolOverloadedError` when the queue is full or the caller's deadline cannot
   *   cover the work ahead (see `deadlineAware`); the caller's abort reason when its signal aborts;
   *   what the worker's function threw; an `Error` once the pool is closed
   */
  run<T = unknown>(data: unknown, options?: WorkerRunOptions): Promise<T>
  /** Tasks running now. */
  readonly active: number
  /** Tasks waiting for a thread. */
  readonly queued: number
  /** The most tasks running at once (and threads). */
  readonly concurrency: number
  /** The most tasks waiting for a thread. */
  readonly maxQueue: number
  /** Worker threads alive now. */
  readonly threads: number
  /** The worker file, as a path. */
  readonly filename: string
  /**
   * Stops every thread. Tasks still running reject, queued ones reject when their turn comes, and
   * later calls to `run()` reject: all with an `Error` saying the pool is closed.
   */
  close(): Promise<void>
  /** The same as `close()`, for `await using pool = createWorkerPool(...)`. */
  [Symbol.asyncDispose](): Promise<void>
}

function loadPiscina(): typeof PiscinaPool {
  // Loaded with the first worker pool, not with the package: apps without one never load it.
  // Its CommonJS entry exports the class itself (which also carries itself as `Piscina`).
  const exported = require('piscina') as typeof PiscinaPool
  return exported.Piscina ?? exported
}

// Every live worker pool, for inspect() and the metrics; shared by copies of the package like the
// registry. Closing a pool takes it out.
const live = shared('tether.workerPools', () => new Set<{ state(): WorkerPoolState }>())

/** The live worker pools' gauges. @internal */
export function workerPools(): WorkerPoolState[] {
  const states: WorkerPoolState[] = []
  for (const pool of live) states.push(pool.state())
  return states
}

const CLOSED = 'worker pool is closed'

function isPiscinaAbort(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError'
}

class ThreadPool implements WorkerPool {
  readonly filename: string
  readonly #admission: Pool
  readonly #workerData: unknown
  #piscina: PiscinaPool
  /** Piscina instances given up on because no thread of theirs could load the worker file. */
  readonly #retired = new WeakMap<PiscinaPool, unknown>()
  #closed = false

  constructor(filename: string, admission: Pool, workerData: unknown) {
    this.filename = filename
    this.#admission = admission
    this.#workerData = workerData
    this.#piscina = this.#start()
    live.add(this)
  }

  #start(): PiscinaPool {
    const Piscina = loadPiscina()
    const concurrency = this.#admission.concurrency
    const piscina = new Piscina({
      filename: this.filename,
      // One task per thread, and never more tasks handed over than threads: the queue, with its
      // overload policy and its abort handling, is the admission pool's, not piscina's.
      maxThreads: concurrency,
      // Piscina's own default, capped by concurrency: some threads ready before the first task.
      minThreads: Math.min(concurrency, Math.max(Math.floor(availableParallelism() / 2), 1)),
      concurrentTasksPerWorker: 1,
      maxQueue: Number.POSITIVE_INFINITY,
      workerData: this.#workerData,
    })
    piscina.on('error', (error: unknown) => this.#threadFailed(piscina, error))
    return piscina
  }

  /**
   * Piscina emits 'error' for a thread that failed with no task to blame: typically a worker file
   * that throws while loading. Unheard, the event would crash the process. Worse, piscina then
   * stops starting threads, and tasks handed to it wait for one forever: when none is left and
   * tasks wait, this instance is retired (its waiting tasks reject with the load error) and a
   * fresh one takes the next tasks, which tries the file again.
   */
  #threadFailed(piscina: PiscinaPool, error: unknown): void {
    process.emitWarning(`tether: a worker thread of ${this.filename} failed: ${String(error)}`, {
      type: 'TetherWorkerWarning',
      code: 'TETHER_WORKER_FAILED',
    })
    if (this.#closed || piscina !== this.#piscina || piscina.threads.length > 0 || piscina.queueSize === 0) return
    this.#retired.set(piscina, error)
    this.#piscina = this.#start()
    void piscina.destroy()
  }

  get active(): number {
    return this.#admission.active
  }

  get queued(): number {
    return this.#admission.queued
  }

  get concurrency(): number {
    return this.#admission.concurrency
  }

  get maxQueue(): number {
    return this.#admission.maxQueue
  }

  get threads(): number {
    return this.#piscina.threads.length
  }

  run<T = unknown>(data: unknown, options?: WorkerRunOptions): Promise<T> {
    checkOptionsObject('workerPool.run()', options, RUN_OPTIONS)
    const name = options?.name
    if (name !== undefined && (typeof name !== 'string' || name === '')) {
      throw new TypeError(`\`name\` must be the name of an export of the worker file, received ${received(name)}`)
    }
    const signal = options?.signal === undefined ? undefined : checkSignal('signal', options.signal)
    if (this.#closed) return Promise.reject(new Error(CLOSED))
    return this.#admission.run<T>(
      (taskSignal) => this.#dispatch<T>(data, name, taskSignal),
      signal === undefined ? undefined : { signal },
    )
  }

  /** Hands a task that has a slot to a thread. */
  #dispatch<T>(data: unknown, name: string | undefined, signal: AbortSignal): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(CLOSED))
    const piscina = this.#piscina
    // A caller without any signal passes none: piscina would add a listener per task to the
    // shared never-aborting signal.
    return piscina
      .run(data, signal === neverAborted ? { name } : { name, signal })
      .catch((error: unknown) => this.#failed(error, signal, piscina)) as Promise<T>
  }

  /** What a task that piscina rejected rejects with. */
  #failed(error: unknown, signal: AbortSignal, piscina: PiscinaPool): never {
    // Piscina rejects an aborted task with its own AbortError (the reason as its cause), and has
    // already stopped the thread the task ran on. The caller gets its own reason back, intact.
    if (signal.aborted && isPiscinaAbort(error)) {
      counters.workerAborted++
      throw signal.reason
    }
    // Stopped by close(), or by retiring an instance whose threads cannot load the file.
    if (this.#closed) throw new Error(CLOSED, { cause: error })
    if (this.#retired.has(piscina)) throw this.#retired.get(piscina)
    throw error
  }

  /** @internal */
  state(): WorkerPoolState {
    return {
      filename: this.filename,
      concurrency: this.concurrency,
      threads: this.threads,
      active: this.active,
      queued: this.queued,
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    live.delete(this)
    await this.#piscina.destroy()
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }
}

/** The worker file as a path: absolute, or a `file:` URL; and it must exist. */
function checkFilename(value: unknown): string {
  let path: string
  if (value instanceof URL || (typeof value === 'string' && value.startsWith('file:'))) {
    try {
      path = fileURLToPath(value)
    } catch {
      throw new TypeError(`\`filename\` must be an absolute path or a file: URL, received ${received(value)}`)
    }
  } else if (typeof value === 'string' && isAbsolute(value)) {
    path = value
  } else {
    // A relative path would resolve against the worker's working directory, not the caller's file.
    throw new TypeError(`\`filename\` must be an absolute path or a file: URL, received ${received(value)}`)
  }
  let isFile = false
  try {
    isFile = statSync(path).isFile()
  } catch {
    // reported below
  }
  if (!isFile) throw new TypeError(`\`filename\` must name an existing file, received ${received(value)}`)
  return path
}

/**
 * Runs synchronous work (parsing, rendering, hashing, a regex, image work) in worker threads,
 * built on piscina, so that it can be stopped: JavaScript cannot interrupt a loop, but a thread can
 * be terminated. With the same face as {@link createPool}: `run(data, { name?, signal? })` binds to
 * `currentScope()` by default, a queued task whose caller aborts never starts, overload is shed
 * with `PoolOverloadedError` under the same deadline-aware policy. Beyond it, a running task whose
 * caller aborts (its request's deadline, a client hang-up, shutdown) has its thread stopped at
 * once: the CPU is free for everyone else, the caller rejects with its signal's reason, and a
 * fresh thread takes the stopped one's place.
 *
 * A round trip to a thread costs tens of microseconds (see the README's benchmarks): worth it for
 * work of a millisecond or more, not for a few microseconds of it.
 *
 * @param options - `filename` (required), `concurrency`, `maxQueue`, `retryAfter`, `deadlineAware`,
 *   `workerData`
 * @returns the pool; `close()` it when the app stops (idle threads do not keep the process alive)
 * @throws TypeError/RangeError naming the option and the value received, for a missing or invalid
 *   `filename` (not absolute, not a file) or other invalid options
 *
 * @example
 * ```ts
 * // render.mjs: export default function render({ template, data }) { ... return html }
 * const renderer = createWorkerPool({ filename: new URL('./render.mjs', import.meta.url) })
 * app.get('/report', async (req, res) => {
 *   // At the request's deadline the render's thread is stopped, and the client gets the answer.
 *   res.send(await renderer.run({ template: 'report', data: await loadReport(req.query) }))
 * })
 * ```
 */
export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  if (options === undefined) {
    throw new TypeError('createWorkerPool() expects an options object with `filename`, received undefined')
  }
  checkOptionsObject('createWorkerPool()', options, WORKER_POOL_OPTIONS)
  const filename = checkFilename(options.filename)
  const concurrency =
    options.concurrency === undefined
      ? availableParallelism()
      : checkCount('concurrency', options.concurrency, { allowInfinity: false })
  const maxQueue =
    options.maxQueue === undefined ? Number.POSITIVE_INFINITY : checkCount('maxQueue', options.maxQueue, { min: 0 })
  const retryAfter =
    options.retryAfter === undefined
      ? 1
      : checkCount('retryAfter', options.retryAfter, { min: 0, allowInfinity: false })
  const deadlineAware =
    options.deadlineAware === undefined ? true : checkBoolean('deadlineAware', options.deadlineAware)
  const admission = poolFor('worker-pool', concurrency, maxQueue, retryAfter, deadlineAware)
  return new ThreadPool(filename, admission, options.workerData)
}
