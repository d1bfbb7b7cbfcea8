import { getEventListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { inspect as inspectValue } from 'node:util'
import { describe, expect, it } from 'vitest'
import {
  all,
  allSettled,
  CanceledError,
  createPool,
  createScope,
  currentScope,
  inspect,
  isCanceled,
  Scope,
  TaskGroup,
} from '../src/index.js'

/** A promise with its resolve/reject exposed, for ordering tests without timing. */
function deferred<T = void>() {
  let resolve!: (value: T) => void
  let reject!: (reason: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Resolves when `signal` aborts, with its reason. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }))
}

// Ported from golang.org/x/sync/errgroup's errgroup_test.go: each case lists what the tasks
// return (undefined for success) and the error Wait must report: the first one.
const err1 = new Error('errgroup_test: 1')
const err2 = new Error('errgroup_test: 2')
const errCases: Array<{ errs: Array<Error | undefined>; want: Error | undefined }> = [
  { errs: [], want: undefined },
  { errs: [undefined], want: undefined },
  { errs: [err1], want: err1 },
  { errs: [err1, undefined], want: err1 },
  { errs: [err1, undefined, err2], want: err1 },
]

describe('TaskGroup (errgroup_test.go)', () => {
  it('TestZeroGroup: after each go(), wait() reports the first error so far', async () => {
    // Go calls Wait after every Go on one group; a tether group is used once, so each prefix of
    // the case runs on a fresh group.
    for (const { errs } of errCases) {
      for (let length = 1; length <= errs.length; length++) {
        const prefix = errs.slice(0, length)
        const group = new TaskGroup()
        for (const err of prefix) {
          group.go(async () => {
            if (err) throw err
          })
        }
        const got = await group.wait().then(
          () => undefined,
          (error: unknown) => error,
        )
        expect(got).toBe(prefix.find((err) => err !== undefined))
      }
    }
  })

  it("TestWithContext: the first error is wait()'s and the signal's reason, and the signal is aborted after wait()", async () => {
    for (const { errs, want } of errCases) {
      const group = new TaskGroup()
      for (const err of errs) {
        group.go(async () => {
          if (err) throw err
        })
      }
      const result = await group.wait().then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(result).toBe(want)
      // Go: "the derived Context is canceled the first time ... Wait returns".
      expect(group.signal.aborted).toBe(true)
      if (want) expect(group.signal.reason).toBe(want)
      else expect(isCanceled(group.signal.reason)).toBe(true)
    }
  })

  it('TestCancelCause: the group signal aborts with the failing task error as its reason, at once', async () => {
    const group = new TaskGroup()
    const gate = deferred()
    group.go(async () => {
      await gate.promise
    })
    group.go(async () => {
      throw err1
    })
    await sleep(1)
    expect(group.signal.aborted).toBe(true)
    expect(group.signal.reason).toBe(err1)
    gate.resolve()
    await expect(group.wait()).rejects.toBe(err1)
  })

  it('TestTryGo: succeeds up to the limit, refuses at it, succeeds again once a slot frees', async () => {
    const n = 42
    const group = new TaskGroup({ limit: n })
    const gates = Array.from({ length: n + 1 }, () => deferred())
    let next = 0
    const fn = () => gates[next++]?.promise
    for (let i = 0; i < n; i++) expect(group.tryGo(fn), `TryGo #${i}`).toBe(true)
    expect(group.tryGo(fn)).toBe(false)
    gates[0]?.resolve()
    await sleep(1)
    expect(group.tryGo(fn)).toBe(true)
    expect(group.tryGo(fn)).toBe(false)
    for (const gate of gates) gate.resolve()
    await group.wait()
    // Unlike Go's zero Group, a tether group is used once: after wait() its signal is aborted.
    expect(group.tryGo(fn)).toBe(false)
  })

  it('TestGoLimit: never runs more than `limit` tasks at once, and runs them all', async () => {
    const limit = 3
    const group = new TaskGroup({ limit })
    let active = 0
    let maxActive = 0
    let done = 0
    for (let i = 0; i < 10; i++) {
      group.go(async () => {
        active++
        maxActive = Math.max(maxActive, active)
        await sleep(1 + (i % 3))
        active--
        done++
      })
    }
    await group.wait()
    expect(maxActive).toBe(limit)
    expect(done).toBe(10)
  })

  it('TestPanic (a synchronous throw): counts as a failure and aborts the group', async () => {
    const group = new TaskGroup()
    const sibling = deferred()
    group.go(async (signal) => {
      await aborted(signal)
      sibling.resolve()
    })
    group.go(() => {
      throw err2
    })
    await expect(group.wait()).rejects.toBe(err2)
    await sibling.promise
  })
})

describe('TaskGroup', () => {
  it('resolves wait() at once for zero tasks', async () => {
    await expect(new TaskGroup().wait()).resolves.toBeUndefined()
  })

  it('rejects wait() only after every started task has settled', async () => {
    const log: string[] = []
    const group = new TaskGroup()
    group.go(async () => {
      log.push('fail')
      throw err1
    })
    group.go(async (signal) => {
      await aborted(signal)
      await sleep(30) // cleanup that takes a while after the abort
      log.push('slow sibling settled')
    })
    await group.wait().catch(() => log.push('wait rejected'))
    expect(log).toEqual(['fail', 'slow sibling settled', 'wait rejected'])
  })

  it('starts no queued task once the group is aborted', async () => {
    const started: number[] = []
    const group = new TaskGroup({ limit: 1 })
    group.go(async () => {
      started.push(0)
      throw err1
    })
    for (let i = 1; i < 5; i++) group.go(async () => void started.push(i))
    await expect(group.wait()).rejects.toBe(err1)
    expect(started).toEqual([0])
    group.go(async () => void started.push(99))
    expect(started).toEqual([0])
  })

  it("rejects wait() with the parent's reason when the parent aborts, dropping queued tasks", async () => {
    const parent = new AbortController()
    const group = new TaskGroup({ signal: parent.signal, limit: 1 })
    const started: number[] = []
    group.go(async (signal) => {
      started.push(1)
      await aborted(signal)
    })
    group.go(async () => void started.push(2))
    const reason = new Error('client went away')
    parent.abort(reason)
    await expect(group.wait()).rejects.toBe(reason)
    expect(group.signal.reason).toBe(reason)
    expect(started).toEqual([1])
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
  })

  it('binds to the current scope when no signal is given', async () => {
    const scope = createScope()
    const group = scope.run(() => new TaskGroup())
    const reason = new Error('request ended')
    group.go((signal) => aborted(signal))
    const seen = group.wait()
    scope.cancel(reason)
    expect(group.signal.reason).toBe(reason)
    await expect(seen).rejects.toBe(reason)
  })

  it("runs its tasks with the group's own scope current: a child of the caller's, whose signal is the group's", async () => {
    const scope = createScope({ timeout: 60_000 })
    const { group, seen } = await scope.run(async () => {
      const group = new TaskGroup({ limit: 1 })
      const seen: (Scope | undefined)[] = []
      for (let i = 0; i < 3; i++) {
        group.go(async () => {
          await sleep(1)
          seen.push(currentScope())
        })
      }
      await group.wait()
      return { group, seen }
    })
    expect(seen).toHaveLength(3)
    const [first] = seen
    expect(first).toBeInstanceOf(Scope)
    expect(first).not.toBe(scope)
    expect(seen.every((each) => each === first)).toBe(true)
    expect(first?.signal).toBe(group.signal)
    expect(first?.deadline).toBe(scope.deadline)
    scope.cancel()
  })

  it('does not start tasks in a group whose parent scope has already ended', async () => {
    const scope = createScope()
    scope.cancel()
    let started = false
    const group = new TaskGroup({ signal: scope.signal })
    group.go(() => {
      started = true
    })
    expect(started).toBe(false)
    await expect(group.wait()).rejects.toBeInstanceOf(CanceledError)
  })

  it('rejects invalid options and tasks at once', () => {
    expect(() => new TaskGroup({ limit: 0 })).toThrow(RangeError)
    expect(() => new TaskGroup({ limit: 1.5 })).toThrow(/`limit`.*1\.5/)
    expect(() => new TaskGroup({ limit: '2' as never })).toThrow(TypeError)
    expect(() => new TaskGroup({ signal: 'nope' as never })).toThrow(/`signal`/)
    expect(() => new TaskGroup().go(42 as never)).toThrow(/task must be a function.*42/)
  })
})

describe('all()', () => {
  it('resolves the results in the order of the tasks, whatever order they finish in', async () => {
    const results = await all([
      async () => {
        await sleep(20)
        return 'slow'
      },
      () => 42,
      async () => ({ fast: true }),
    ])
    expect(results).toEqual(['slow', 42, { fast: true }])
  })

  it('resolves an empty array for no tasks', async () => {
    await expect(all([])).resolves.toEqual([])
  })

  it('never leaves a sibling running when it rejects', async () => {
    let siblingSettled = false
    const rejection = all([
      async (signal) => {
        await aborted(signal)
        await sleep(30)
        siblingSettled = true
      },
      async () => {
        await sleep(5)
        throw err1
      },
    ]).catch((error: unknown) => ({ error, siblingSettled }))
    await expect(rejection).resolves.toEqual({ error: err1, siblingSettled: true })
  })

  it('respects a limit', async () => {
    let active = 0
    let maxActive = 0
    const task = async () => {
      active++
      maxActive = Math.max(maxActive, active)
      await sleep(2)
      active--
      return active
    }
    const results = await all(
      Array.from({ length: 8 }, () => task),
      { limit: 2 },
    )
    expect(results).toHaveLength(8)
    expect(maxActive).toBe(2)
  })

  it("rejects with the current scope's reason and starts nothing when the scope has ended", async () => {
    const scope = createScope()
    const reason = new Error('ended')
    scope.cancel(reason)
    let started = false
    const result = scope.run(() =>
      all([
        () => {
          started = true
        },
      ]),
    )
    await expect(result).rejects.toBe(reason)
    expect(started).toBe(false)
  })

  it('throws a TypeError for something that is not an array of functions', () => {
    expect(() => all('abc' as never)).toThrow(TypeError)
    expect(() => all([() => 1, Promise.resolve(2)] as never)).toThrow(/task must be a function/)
  })
})

describe('when a group is done', () => {
  it('tells work a task started and left behind to stop', async () => {
    let leftover: Promise<unknown> | undefined
    await all([
      (signal) => {
        leftover = sleep(10_000, undefined, { signal }).then(
          () => 'ran on',
          (error: unknown) => error,
        )
        return 'returned early'
      },
    ])
    // timers/promises rejects with an AbortError whose cause is the signal's reason.
    const error = (await leftover) as Error & { cause?: unknown }
    expect(error.name).toBe('AbortError')
    expect(isCanceled(error.cause)).toBe(true)
    expect((error.cause as Error).message).toBe('task group finished')
  })

  it('reads as aborted afterwards, even when nothing was listening', async () => {
    const group = new TaskGroup()
    let held: AbortSignal | undefined
    group.go((signal) => {
      held = signal
    })
    await group.wait()
    expect(group.signal.aborted).toBe(true)
    expect(held).toBe(group.signal)
    expect(group.tryGo(() => undefined)).toBe(false)
  })
})

describe('the group signal, once the group is done, whoever holds it', () => {
  it('aborts a signal a task derived with AbortSignal.any', async () => {
    let derived: AbortSignal | undefined
    await all([
      (signal) => {
        derived = AbortSignal.any([signal])
      },
    ])
    expect(derived?.aborted).toBe(true)
    expect(isCanceled(derived?.reason)).toBe(true)
  })

  it('reads as aborted to a task that kept it and polls it, without asking the group again', async () => {
    let held: AbortSignal | undefined
    await all([
      (signal) => {
        held = signal
      },
    ])
    expect(() => held?.throwIfAborted()).toThrow('task group finished')
  })

  it('aborts with a reason that reads like a stack-less CanceledError, a new one each time', async () => {
    const held: AbortSignal[] = []
    const keep = (signal: AbortSignal) => {
      held.push(signal)
    }
    await all([keep])
    const group = new TaskGroup()
    group.go(keep)
    await group.wait()
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    const expected = new CanceledError('task group finished')
    Error.stackTraceLimit = limit
    const [fromAll, fromGroup] = held.map((signal) => signal.reason as CanceledError)
    for (const reason of [fromAll, fromGroup]) {
      expect(reason).toBeInstanceOf(CanceledError)
      expect(reason).toBeInstanceOf(Error)
      expect(isCanceled(reason)).toBe(true)
      expect([reason?.name, reason?.message, reason?.code, reason?.statusCode, reason?.expose]).toEqual([
        'CanceledError',
        'task group finished',
        'TETHER_CANCELED',
        499,
        true,
      ])
      expect(reason?.stack).toBe(expected.stack)
      expect(String(reason)).toBe(String(expected))
      expect(Object.keys(reason as object)).toEqual(Object.keys(expected))
      expect(JSON.stringify(reason)).toBe(JSON.stringify(expected))
      expect(inspectValue(reason)).toBe(inspectValue(expected))
      // Decorating it (undici's fetch defines `stack`) works and stays on this one.
      Object.defineProperty(reason, 'stack', { value: 'decorated', configurable: true })
      expect(reason?.stack).toBe('decorated')
    }
    expect(fromAll).not.toBe(fromGroup)
    expect(fromGroup?.stack).toBe('decorated')
    expect(fromAll?.message).toBe('task group finished')
  })
  it('keeps the reason of a failure rather than replacing it with "finished"', async () => {
    let held: AbortSignal | undefined
    const failure = new Error('boom')
    await expect(
      all([
        (signal) => {
          held = signal
        },
        () => Promise.reject(failure),
      ]),
    ).rejects.toBe(failure)
    expect(held?.reason).toBe(failure)
  })
})

describe('a group that outlives its request', () => {
  it("lists one lingering record counting only the tasks still pending, for all()'s fast path", async () => {
    const scope = createScope()
    let release: (() => void) | undefined
    const result = scope.run(() =>
      all([
        () => 'done at once',
        () => sleep(1).then(() => 'soon'),
        () => new Promise<void>((resolve) => (release = resolve)), // ignores its signal
      ]),
    )
    await sleep(20)
    scope.cancel()
    await expect.poll(() => inspect().lingering.filter((task) => task.kind === 'group')).toHaveLength(1)
    const [record] = inspect().lingering.filter((task) => task.kind === 'group')
    expect(record?.tasks).toBe(1)
    release?.()
    await expect(result).rejects.toSatisfy(isCanceled)
    await expect.poll(() => inspect().lingering).toHaveLength(0)
  })

  it('counts nothing as lingering when a failure stops the work its tasks started', async () => {
    const before = inspect().counters.lingering
    const scope = createScope()
    await expect(
      scope.run(() =>
        all([
          () => all([(signal) => sleep(10_000, undefined, { signal })]),
          () => createPool({ concurrency: 1 }).run((signal) => sleep(10_000, undefined, { signal })),
          () => Promise.reject(new Error('sibling failed')),
        ]),
      ),
    ).rejects.toThrow('sibling failed')
    await new Promise((resolve) => setImmediate(resolve))
    expect(inspect().counters.lingering).toBe(before)
    expect(inspect().lingering).toHaveLength(0)
    scope.cancel()
  })
})

describe('regressions found by the property tests', () => {
  it('all() and allSettled() with a limit run every task when the first finishes synchronously', async () => {
    await expect(all([() => 1, () => 2, () => 3], { limit: 1 })).resolves.toEqual([1, 2, 3])
    await expect(allSettled([() => 1, () => 2], { limit: 1 })).resolves.toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'fulfilled', value: 2 },
    ])
  })

  it('drains a queue of synchronous tasks started one from another without losing its place', async () => {
    const group = new TaskGroup({ limit: 1 })
    const first = deferred()
    const ran: string[] = []
    group.go(() => first.promise)
    for (const name of ['b', 'c', 'd']) group.go(() => void ran.push(name))
    first.resolve()
    await sleep(1) // the queue drains before anyone waits
    await group.wait()
    expect(ran).toEqual(['b', 'c', 'd'])
  })

  it('allSettled() keeps starting tasks after one throws synchronously, and reports that throw', async () => {
    const boom = new Error('boom')
    let ranSecond = false
    const results = await allSettled([
      () => {
        throw boom
      },
      () => {
        ranSecond = true
        return 2
      },
    ])
    expect(results).toEqual([
      { status: 'rejected', reason: boom },
      { status: 'fulfilled', value: 2 },
    ])
    expect(ranSecond).toBe(true)
  })
})

describe('allSettled()', () => {
  it('reports each outcome in order, and a failure does not abort the siblings', async () => {
    let siblingAborted = false
    const results = await allSettled([
      async () => 1,
      async () => {
        throw err1
      },
      async (signal) => {
        await sleep(10)
        siblingAborted = signal.aborted
        return 'done'
      },
    ])
    expect(results).toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'rejected', reason: err1 },
      { status: 'fulfilled', value: 'done' },
    ])
    expect(siblingAborted).toBe(false)
  })

  it("reports tasks that never started as rejected with the parent's reason", async () => {
    const parent = new AbortController()
    const reason = new Error('gone')
    const settled = allSettled(
      [
        async (signal) => {
          await aborted(signal)
          return 'stopped'
        },
        async () => 'never',
      ],
      { signal: parent.signal, limit: 1 },
    )
    parent.abort(reason)
    await expect(settled).resolves.toEqual([
      { status: 'fulfilled', value: 'stopped' },
      { status: 'rejected', reason },
    ])
  })
})
