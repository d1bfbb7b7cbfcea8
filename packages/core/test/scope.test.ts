import { AsyncLocalStorage, createHook } from 'node:async_hooks'
import { getEventListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it, vi } from 'vitest'
import {
  CanceledError,
  createScope,
  currentScope,
  DeadlineExceededError,
  inspect,
  isCanceled,
  isDeadlineExceeded,
} from '../src/index.js'
import { armedTimers, emptyListsArmed } from '../src/primitives/timers.js'

// Timing assertions are one-sided with generous upper bounds: this suite runs on shared 2-core
// machines, and what it checks is that a deadline fires, not the scheduler's precision.
const SLACK_MS = 1_000

/** Lingering is decided once an abort has propagated: one turn of the event loop. */
const afterAbortPropagates = () => new Promise((resolve) => setImmediate(resolve))

/** Milliseconds from `start` (now, unless given) until `signal` aborts. */
function abortedWithin(signal: AbortSignal, start = Date.now()): Promise<number> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(Date.now() - start), { once: true }))
}

describe('createScope: deadlines', () => {
  it('aborts the signal with DeadlineExceededError when the timeout passes', async () => {
    // Counted from before the scope reads the clock: a busy machine can pause the test for a few
    // milliseconds between createScope() and a clock read of its own, which the deadline does not wait for.
    const start = Date.now()
    const scope = createScope({ timeout: 40 })
    const elapsed = await abortedWithin(scope.signal, start)
    expect(elapsed).toBeGreaterThanOrEqual(40)
    expect(elapsed).toBeLessThan(40 + SLACK_MS)
    expect(scope.signal.reason).toBeInstanceOf(DeadlineExceededError)
    expect(scope.signal.reason.name).toBe('DeadlineExceededError')
    expect(scope.signal.reason.code).toBe('TETHER_DEADLINE_EXCEEDED')
    expect(isDeadlineExceeded(scope.signal.reason)).toBe(true)
  })

  it('honours an absolute deadline, and the earlier of timeout and deadline', async () => {
    const absolute = createScope({ deadline: Date.now() + 30 })
    await abortedWithin(absolute.signal)
    expect(isDeadlineExceeded(absolute.signal.reason)).toBe(true)

    const deadline = Date.now() + 10_000
    expect(createScope({ timeout: 60_000, deadline }).deadline).toBe(deadline)
    const byTimeout = createScope({ timeout: 50, deadline })
    expect(byTimeout.deadline).toBeLessThan(deadline)
    byTimeout.cancel()
  })

  it('aborts at once when the deadline has already passed', () => {
    const scope = createScope({ deadline: Date.now() - 1 })
    expect(scope.signal.aborted).toBe(true)
    expect(isDeadlineExceeded(scope.signal.reason)).toBe(true)
    expect(createScope({ timeout: 0 }).remaining()).toBe(0)
  })

  it('reports remaining(): Infinity without a deadline, the time left before it, 0 once aborted', async () => {
    const open = createScope()
    expect(open.deadline).toBeUndefined()
    expect(open.remaining()).toBe(Number.POSITIVE_INFINITY)
    open.cancel()
    expect(open.remaining()).toBe(0)

    const timed = createScope({ timeout: 5_000 })
    expect(timed.remaining()).toBeGreaterThan(4_000)
    expect(timed.remaining()).toBeLessThanOrEqual(5_000)
    timed.cancel()
    expect(timed.remaining()).toBe(0)

    const expiring = createScope({ timeout: 20 })
    await abortedWithin(expiring.signal)
    expect(expiring.remaining()).toBe(0)
  })

  it('keeps a far deadline (beyond what setTimeout can wait) from firing early', async () => {
    const scope = createScope({ timeout: 2 ** 31 + 10_000 })
    await sleep(20)
    expect(scope.signal.aborted).toBe(false)
    expect(scope.remaining()).toBeGreaterThan(2 ** 31)
    scope.cancel()
  })
})

describe('Scope.child', () => {
  it("takes the earlier of its own deadline and its parent's", () => {
    const parent = createScope({ timeout: 1_000 })
    const tighter = parent.child({ timeout: 100 })
    const looser = parent.child({ timeout: 60_000 })
    const plain = parent.child()
    expect(tighter.deadline).toBeLessThan(parent.deadline as number)
    expect(looser.deadline).toBe(parent.deadline)
    expect(plain.deadline).toBe(parent.deadline)
    parent.cancel()
  })

  it("aborts every descendant with the parent's reason, unchanged", () => {
    const parent = createScope()
    const child = parent.child()
    const grandchild = child.child({ timeout: 60_000 })
    const reason = new Error('upstream gave up')
    parent.cancel(reason)
    expect(child.signal.reason).toBe(reason)
    expect(grandchild.signal.reason).toBe(reason)
    expect(grandchild.remaining()).toBe(0)
  })

  it("aborts a child at the parent's deadline with the parent's DeadlineExceededError", async () => {
    const parent = createScope({ timeout: 30 })
    const child = parent.child()
    const grandchild = child.child({ timeout: 60_000 })
    await abortedWithin(grandchild.signal)
    expect(grandchild.signal.reason).toBe(parent.signal.reason)
    expect(isDeadlineExceeded(grandchild.signal.reason)).toBe(true)
  })

  it('fires its own, earlier deadline and leaves the parent running', async () => {
    const parent = createScope({ timeout: 60_000 })
    const child = parent.child({ timeout: 20 })
    await abortedWithin(child.signal)
    expect(isDeadlineExceeded(child.signal.reason)).toBe(true)
    expect(parent.signal.aborted).toBe(false)
    parent.cancel()
  })

  it('leaves the parent alone when the child is cancelled', () => {
    const parent = createScope()
    const child = parent.child()
    child.cancel()
    expect(child.signal.aborted).toBe(true)
    expect(parent.signal.aborted).toBe(false)
    expect(parent.remaining()).toBe(Number.POSITIVE_INFINITY)
  })

  it('is born aborted under an aborted parent', () => {
    const parent = createScope()
    const reason = new Error('late')
    parent.cancel(reason)
    const child = parent.child()
    expect(child.signal.aborted).toBe(true)
    expect(child.signal.reason).toBe(reason)
  })

  it('keeps the deadline it inherited after its parent aborts, and so do its children', async () => {
    const parent = createScope({ timeout: 5 })
    const child = parent.child()
    const grandchild = child.child({ timeout: 60_000 })
    const deadline = parent.deadline
    await abortedWithin(grandchild.signal)
    expect(child.deadline).toBe(deadline)
    expect(grandchild.deadline).toBe(deadline)
    const cancelled = createScope({ timeout: 60_000 })
    const kid = cancelled.child()
    cancelled.cancel()
    expect(kid.deadline).toBe(cancelled.deadline)
  })

  it('keeps its deadline readable after it has been unlinked', () => {
    const parent = createScope({ timeout: 5_000 })
    const child = parent.child()
    const deadline = child.deadline
    child.cancel()
    expect(child.deadline).toBe(deadline)
    parent.cancel()
  })
})

describe('cancel()', () => {
  it('aborts with a CanceledError when no reason is given', () => {
    const scope = createScope()
    scope.cancel()
    expect(scope.signal.reason).toBeInstanceOf(CanceledError)
    expect(scope.signal.reason.name).toBe('CanceledError')
    expect(scope.signal.reason.code).toBe('TETHER_CANCELED')
    expect(isCanceled(scope.signal.reason)).toBe(true)
  })

  it('lets the first cancellation win over later ones and over the deadline', async () => {
    const scope = createScope({ timeout: 20 })
    const signal = scope.signal
    const first = new Error('first')
    scope.cancel(first)
    scope.cancel(new Error('second'))
    await sleep(40)
    expect(signal.reason).toBe(first)
  })

  it('gives the same reason to a signal created before and after the abort', () => {
    const early = createScope()
    const signal = early.signal
    early.cancel()
    expect(early.signal).toBe(signal)

    const late = createScope()
    late.cancel()
    const a = late.signal.reason
    expect(late.signal.reason).toBe(a)
    expect(late.child().signal.reason).toBe(a)
  })

  it('is what disposing of a scope does', () => {
    const scope = createScope()
    scope[Symbol.dispose]()
    expect(scope.signal.aborted).toBe(true)
    expect(isCanceled(scope.signal.reason)).toBe(true)
  })
})

describe('a parent AbortSignal', () => {
  it('aborts the scope with its reason', () => {
    const controller = new AbortController()
    const scope = createScope({ signal: controller.signal })
    const reason = new Error('caller left')
    controller.abort(reason)
    expect(scope.signal.reason).toBe(reason)
  })

  it('aborts the scope at once when it is already aborted', () => {
    const reason = new Error('already gone')
    const scope = createScope({ signal: AbortSignal.abort(reason) })
    expect(scope.signal.aborted).toBe(true)
    expect(scope.signal.reason).toBe(reason)
    expect(scope.remaining()).toBe(0)
  })

  it('has its single listener removed when the scope ends', () => {
    const controller = new AbortController()
    const scope = createScope({ signal: controller.signal, timeout: 60_000 })
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1)
    scope.cancel()
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
  })

  it("links to a scope's own signal without adding a listener to it", () => {
    const parent = createScope({ timeout: 60_000 })
    const child = createScope({ signal: parent.signal })
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
    expect(child.deadline).toBe(parent.deadline)
    const reason = new Error('stop')
    parent.cancel(reason)
    expect(child.signal.reason).toBe(reason)
  })

  it("adds no listener when given its own parent's signal", () => {
    const parent = createScope()
    parent.child({ signal: parent.signal })
    expect(getEventListeners(parent.signal, 'abort')).toHaveLength(0)
    parent.cancel()
  })

  it("follows an extra signal given to child() next to the parent's", () => {
    const parent = createScope()
    const other = createScope()
    const child = parent.child({ signal: other.signal })
    const reason = new Error('other side')
    other.cancel(reason)
    expect(child.signal.reason).toBe(reason)
    expect(parent.signal.aborted).toBe(false)
    parent.cancel()
  })
})

describe('run() and currentScope()', () => {
  it('is undefined outside any scope', () => {
    expect(currentScope()).toBeUndefined()
  })

  it('keeps the scope current across awaits, timers, immediates and nested async work', async () => {
    const scope = createScope()
    const seen: Array<unknown> = []
    await scope.run(async () => {
      seen.push(currentScope())
      await sleep(1)
      seen.push(currentScope())
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          seen.push(currentScope())
          resolve()
        }, 1),
      )
      await new Promise<void>((resolve) =>
        setImmediate(() => {
          seen.push(currentScope())
          resolve()
        }),
      )
      const nested = async () => {
        await Promise.resolve()
        return currentScope()
      }
      seen.push(await nested())
      queueMicrotask(() => seen.push(currentScope()))
      await Promise.resolve()
    })
    expect(seen).toHaveLength(6)
    for (const value of seen) expect(value).toBe(scope)
    expect(currentScope()).toBeUndefined()
  })

  it('nests and restores the outer scope', () => {
    const outer = createScope()
    const inner = outer.child()
    outer.run(() => {
      expect(currentScope()).toBe(outer)
      inner.run(() => expect(currentScope()).toBe(inner))
      expect(currentScope()).toBe(outer)
    })
  })

  it('returns what the function returns', async () => {
    const scope = createScope()
    expect(scope.run(() => 42)).toBe(42)
    await expect(scope.run(async () => 'async')).resolves.toBe('async')
  })

  // On Node 24 and later, run() enters through an AsyncResource that puts the caller's context back
  // itself (see runInScope): the caller's other storages must come through, both ways.
  it("keeps the caller's other AsyncLocalStorage values inside, in continuations, and after it returns or throws", async () => {
    const other = new AsyncLocalStorage<string>()
    const scope = createScope()
    const seen: Array<[unknown, unknown]> = []
    await other.run('caller', async () => {
      const pending = scope.run(async () => {
        seen.push([currentScope(), other.getStore()])
        await sleep(1)
        seen.push([currentScope(), other.getStore()])
      })
      seen.push([currentScope(), other.getStore()])
      await pending
      seen.push([currentScope(), other.getStore()])
      expect(() =>
        scope.run(() => {
          throw new Error('thrown inside')
        }),
      ).toThrow('thrown inside')
      seen.push([currentScope(), other.getStore()])
    })
    expect(seen).toEqual([
      [scope, 'caller'],
      [undefined, 'caller'],
      [scope, 'caller'],
      [undefined, 'caller'],
      [undefined, 'caller'],
    ])
  })

  it('is seen by async_hooks as one tether.scope resource per entry on Node 24 and later, none on 22', () => {
    const types: string[] = []
    const hook = createHook({
      init(_id, type) {
        if (type === 'tether.scope') types.push(type)
      },
    }).enable()
    const outer = createScope()
    try {
      outer.run(() => outer.run(() => outer.child().run(() => undefined)))
    } finally {
      hook.disable()
    }
    // The nested run of the scope already current enters nothing.
    expect(types).toHaveLength(Number(process.versions.node.split('.')[0]) >= 24 ? 2 : 0)
  })
})

describe('track()', () => {
  it('returns a promise that settles like the tracked one', async () => {
    const scope = createScope()
    await expect(scope.track(Promise.resolve(7))).resolves.toBe(7)
    const error = new Error('nope')
    await expect(scope.track(Promise.reject(error))).rejects.toBe(error)
    scope.cancel()
  })

  it('lists a task pending at the end of its scope as lingering, until it settles', async () => {
    const scope = createScope()
    let finish!: () => void
    const tracked = scope.track(new Promise<void>((resolve) => (finish = resolve)))
    const before = inspect().counters.lingering
    scope.cancel()
    await afterAbortPropagates()
    expect(inspect().counters.lingering).toBe(before + 1)
    expect(inspect().lingering.filter((task) => task.kind === 'track')).toHaveLength(1)
    finish()
    await tracked
    expect(inspect().lingering.filter((task) => task.kind === 'track')).toHaveLength(0)
    expect(inspect().counters.lingering).toBe(before + 1)
  })

  it('does not report a task that settled before its scope ended', async () => {
    const scope = createScope()
    await scope.track(sleep(1))
    const before = inspect().counters.lingering
    scope.cancel()
    await afterAbortPropagates()
    expect(inspect().counters.lingering).toBe(before)
  })

  it('does not report a task that stops as soon as its scope aborts', async () => {
    const scope = createScope()
    const stopping = scope.track(sleep(60_000, undefined, { signal: scope.signal })).catch(() => 'stopped')
    const before = inspect().counters.lingering
    scope.cancel()
    await afterAbortPropagates()
    expect(inspect().counters.lingering).toBe(before)
    await expect(stopping).resolves.toBe('stopped')
  })
})

describe('invalid options', () => {
  const cases: Array<[string, unknown, ErrorConstructor, RegExp]> = [
    ['negative timeout', { timeout: -1 }, RangeError, /`timeout`.*-1/],
    ['NaN timeout', { timeout: Number.NaN }, RangeError, /`timeout`.*NaN/],
    ['string timeout', { timeout: '100' }, TypeError, /`timeout`.*'100'/],
    ['infinite timeout', { timeout: Number.POSITIVE_INFINITY }, RangeError, /`timeout`.*Infinity/],
    ['string deadline', { deadline: '2030-01-01' }, TypeError, /`deadline`.*'2030-01-01'/],
    ['Date deadline', { deadline: new Date() }, TypeError, /`deadline`/],
    ['NaN deadline', { deadline: Number.NaN }, RangeError, /`deadline`.*NaN/],
    ['non-signal signal', { signal: {} }, TypeError, /`signal`.*\{\}/],
    [
      'signal without removeEventListener',
      { signal: { aborted: false, addEventListener() {} } },
      TypeError,
      /`signal`/,
    ],
    ['options that are not an object', 5, TypeError, /options object.*5/],
  ]
  for (const [name, options, type, message] of cases) {
    it(`throws ${type.name} at once for a ${name}, naming the option and the value`, () => {
      expect(() => createScope(options as never)).toThrow(type)
      expect(() => createScope(options as never)).toThrow(message)
      const parent = createScope()
      expect(() => parent.child(options as never)).toThrow(type)
    })
  }

  it('accepts no options at all', () => {
    expect(createScope().remaining()).toBe(Number.POSITIVE_INFINITY)
    expect(createScope({}).deadline).toBeUndefined()
  })
})

describe('deadline timers', () => {
  it('leave at most one shared timer armed once their scopes end, whatever distinct delays they had', () => {
    const before = armedTimers()
    const scopes = Array.from({ length: 200 }, (_, index) => createScope({ timeout: 123_457 + index * 7 }))
    expect(armedTimers()).toBe(before + 200)
    for (const scope of scopes) scope.cancel()
    expect(emptyListsArmed()).toBeLessThanOrEqual(1)
    expect(armedTimers()).toBeLessThanOrEqual(before + 1)
  })

  it('keep one timer for a list while any of its scopes waits, and fire it for the rest', async () => {
    const first = createScope({ timeout: 30 })
    const second = createScope({ timeout: 30 })
    const armed = armedTimers()
    first.cancel()
    expect(armedTimers()).toBe(armed)
    await abortedWithin(second.signal)
    expect(isDeadlineExceeded(second.signal.reason)).toBe(true)
  })

  it('put scopes with the same timeout into one list even when the clock ticks between reads', () => {
    // A clock that moves on every third read: a timeout counted from one read and timed from
    // another would land, for some scopes only, in the list one millisecond shorter.
    const start = Date.now()
    let reads = 0
    const tick = vi.spyOn(Date, 'now').mockImplementation(() => start + Math.floor(reads++ / 3))
    try {
      const before = armedTimers()
      const roots = Array.from({ length: 20 }, () => createScope({ timeout: 77_001 }))
      const parent = createScope()
      const children = Array.from({ length: 20 }, () => parent.child({ timeout: 77_001 }))
      expect(armedTimers()).toBe(before + 1)
      for (const scope of [...roots, ...children, parent]) scope.cancel()
    } finally {
      tick.mockRestore()
    }
  })

  it('reuse the timer of a list that empties and fills again, one request after another', () => {
    const before = armedTimers()
    for (let index = 0; index < 100; index++) createScope({ timeout: 45_000 }).cancel()
    // One list, one timer, kept across the hundred scopes rather than made a hundred times.
    expect(armedTimers()).toBeLessThanOrEqual(before + 1)
    expect(emptyListsArmed()).toBeLessThanOrEqual(1)
  })
})
