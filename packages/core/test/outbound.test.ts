import { EventEmitter } from 'node:events'
import type { Agent } from 'undici'
import { describe, expect, it } from 'vitest'
import { createScope, isCanceled, isDeadlineExceeded } from '../src/index.js'
import { resolveOutbound, OutboundPool as Transport } from '../src/outbound/outbound.js'

// The transport's rules, against a stand-in for undici's Agent that records what it is given.
// The real-socket behaviour is proven in the top-level test/outbound.test.ts.

interface Dispatched {
  opts: Record<string, unknown>
  handler: {
    onConnect(abort: (reason?: unknown) => void): void
    onError(error: unknown): void
    onComplete(trailers: unknown): void
  }
}

class FakeAgent extends EventEmitter {
  readonly dispatched: Dispatched[] = []
  readonly stats = {}
  dispatch(opts: Record<string, unknown>, handler: Dispatched['handler']): boolean {
    this.dispatched.push({ opts, handler })
    return true
  }
}

/** A handler like undici fetch's, recording what reaches it. */
function recorder() {
  const events: string[] = []
  let abort: ((reason?: unknown) => void) | undefined
  let error: unknown
  return {
    events,
    get abort() {
      return abort
    },
    get error() {
      return error
    },
    handler: {
      onConnect(given: (reason?: unknown) => void) {
        abort = given
        events.push('connect')
      },
      onError(e: unknown) {
        error = e
        events.push('error')
      },
      onComplete() {
        events.push('complete')
      },
      onHeaders: () => true,
      onData: () => true,
    },
  }
}

function transport(options = {}) {
  const agent = new FakeAgent()
  return { agent, transport: new Transport(agent as unknown as Agent, resolveOutbound(options)) }
}

const ORIGIN = 'http://127.0.0.1:9'

describe('the outbound transport', () => {
  it("cuts undici's headers and body timeouts to the caller's remaining budget", () => {
    const { agent, transport: t } = transport({ headersTimeout: 30_000, bodyTimeout: 30_000 })
    const scope = createScope({ timeout: 2_000 })
    scope.run(() => t.dispatch({ origin: ORIGIN, path: '/', method: 'GET' }, recorder().handler))
    const { opts } = agent.dispatched[0] as Dispatched
    expect(opts.headersTimeout).toBeLessThanOrEqual(2_000)
    expect(opts.headersTimeout).toBeGreaterThan(1_000)
    expect(opts.bodyTimeout).toBe(opts.headersTimeout)
    scope.cancel()
  })

  it('leaves the timeouts alone outside a scope, and when the budget is longer than they are', () => {
    const { agent, transport: t } = transport({ headersTimeout: 5_000, bodyTimeout: 5_000 })
    const unscoped = { origin: ORIGIN, path: '/', method: 'GET' }
    t.dispatch(unscoped, recorder().handler)
    const scope = createScope({ timeout: 60_000 })
    const scoped = { origin: ORIGIN, path: '/', method: 'GET' }
    scope.run(() => t.dispatch(scoped, recorder().handler))
    expect(agent.dispatched[0]?.opts).toBe(unscoped)
    expect(agent.dispatched[1]?.opts).toBe(scoped)
    expect(scoped).not.toHaveProperty('headersTimeout')
    scope.cancel()
  })

  it('reports a timeout cut to the budget as DeadlineExceededError, with undici’s error as cause', () => {
    const { agent, transport: t } = transport()
    const scope = createScope({ timeout: 2_000 })
    const caller = recorder()
    scope.run(() => t.dispatch({ origin: ORIGIN, path: '/', method: 'GET' }, caller.handler))
    const timeout = Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' })
    agent.dispatched[0]?.handler.onError(timeout)
    expect(isDeadlineExceeded(caller.error)).toBe(true)
    expect((caller.error as Error).cause).toBe(timeout)
    scope.cancel()
  })

  it('cuts a queued call’s timeouts to what is left of the budget when it leaves the queue', async () => {
    const { agent, transport: t } = transport({ connections: 1 })
    const scope = createScope({ timeout: 1_000 })
    scope.run(() => {
      t.dispatch({ origin: ORIGIN, path: '/a', method: 'GET' }, recorder().handler)
      t.dispatch({ origin: ORIGIN, path: '/b', method: 'GET' }, recorder().handler)
    })
    expect(agent.dispatched).toHaveLength(1)
    await new Promise((resolve) => setTimeout(resolve, 300))
    agent.dispatched[0]?.handler.onComplete(null)
    expect(agent.dispatched).toHaveLength(2)
    expect(agent.dispatched[1]?.opts.headersTimeout).toBeLessThanOrEqual(1_000 - 250)
    scope.cancel()
  })

  it('tells the caller at once when its scope ends before undici has written the call, and stops the call then', () => {
    const { agent, transport: t } = transport()
    const scope = createScope({ timeout: 10_000 })
    const caller = recorder()
    scope.run(() => t.dispatch({ origin: ORIGIN, path: '/', method: 'GET' }, caller.handler))
    scope.cancel()
    expect(caller.events).toEqual(['error'])
    expect(isCanceled(caller.error)).toBe(true)
    // undici connects later and hands over its abort: the call is stopped with the same reason,
    // and the error undici then reports is not passed on a second time.
    const aborted: unknown[] = []
    const dispatched = agent.dispatched[0] as Dispatched
    dispatched.handler.onConnect((reason) => aborted.push(reason))
    expect(aborted).toEqual([caller.error])
    dispatched.handler.onError(new Error('aborted'))
    expect(caller.events).toEqual(['error'])
  })

  it('frees the slot of a call that ends, for the next waiting call, and forgets nothing', () => {
    const { agent, transport: t } = transport({ connections: 2, maxQueue: 10 })
    const scope = createScope({ timeout: 10_000 })
    const callers = Array.from({ length: 6 }, recorder)
    scope.run(() => {
      for (const [i, caller] of callers.entries())
        t.dispatch({ origin: ORIGIN, path: `/${i}`, method: 'GET' }, caller.handler)
    })
    expect(agent.dispatched.map((d) => d.opts.path)).toEqual(['/0', '/1'])
    expect(t.origins()).toEqual([{ origin: ORIGIN, open: 0, idle: 0, busy: 0, queued: 4 }])
    for (let i = 0; i < 6; i++) agent.dispatched[i]?.handler.onComplete(null)
    expect(agent.dispatched.map((d) => d.opts.path)).toEqual(['/0', '/1', '/2', '/3', '/4', '/5'])
    expect(t.gates.get(ORIGIN)).toMatchObject({ active: 0, size: 0, head: undefined, tail: undefined })
    // Finished calls have left the scope: its end reaches none of them.
    scope.cancel()
    expect(callers.map((caller) => caller.events.includes('error'))).toEqual(Array(6).fill(false))
  })

  it('takes a waiting call out of the queue when its own abort is called; it never reaches undici', () => {
    const { agent, transport: t } = transport({ connections: 1 })
    const scope = createScope({ timeout: 10_000 })
    const callers = Array.from({ length: 4 }, recorder)
    scope.run(() => {
      for (const caller of callers) t.dispatch({ origin: ORIGIN, path: '/', method: 'GET' }, caller.handler)
    })
    // The three waiting callers got an abort function at once; the first waits for undici's.
    expect(callers.map((caller) => caller.events)).toEqual([[], ['connect'], ['connect'], ['connect']])
    const reason = new Error('user pressed stop')
    for (const caller of callers.slice(1)) caller.abort?.(reason)
    expect(t.gates.get(ORIGIN)).toMatchObject({ active: 1, size: 0, head: undefined, tail: undefined })
    expect(callers.slice(1).map((caller) => caller.error)).toEqual([reason, reason, reason])
    // The scope's end reaches only the call still in flight, and nothing is handed to undici.
    scope.cancel()
    expect(callers.map((caller) => caller.events.filter((event) => event === 'error').length)).toEqual([1, 1, 1, 1])
    expect(agent.dispatched).toHaveLength(1)
  })

  it('200,000 calls under one long-lived scope, some waiting and some aborted, leave the heap flat', () => {
    const gc = (globalThis as { gc?: () => void }).gc
    if (gc === undefined) throw new Error('run with --expose-gc (vitest.config.ts sets it)')
    const heap = () => {
      gc()
      gc()
      return process.memoryUsage().heapUsed
    }
    const running: Array<{ onComplete(trailers: unknown): void }> = []
    const agent = Object.assign(new EventEmitter(), {
      stats: {},
      dispatch(_opts: unknown, handler: { onComplete(trailers: unknown): void }) {
        running.push(handler)
        return true
      },
    })
    const t = new Transport(agent as unknown as Agent, resolveOutbound({ connections: 4 }))
    const scope = createScope({ timeout: 600_000 })
    let abortLast: ((reason?: unknown) => void) | undefined
    let errors = 0
    const handler = {
      onConnect(abort: (reason?: unknown) => void) {
        abortLast = abort
      },
      onError() {
        errors++
      },
      onComplete() {},
      onHeaders: () => true,
      onData: () => true,
    }
    const reason = new Error('gone')
    // Eight calls at a time on four connections: four wait; the last one's caller gives up.
    const cycle = (count: number) =>
      scope.run(() => {
        for (let i = 0; i < count; i += 8) {
          for (let j = 0; j < 8; j++) t.dispatch({ origin: ORIGIN, path: '/', method: 'GET' }, handler)
          abortLast?.(reason)
          while (running.length > 0) running.shift()?.onComplete(null)
        }
      })
    cycle(10_000)
    const base = heap()
    cycle(200_000)
    // A call left in the scope's list or the queue would keep ~200 bytes: 200,000 of them, tens of MB.
    expect(heap() - base).toBeLessThan(3 * 1024 * 1024)
    expect(errors).toBe(210_000 / 8)
    expect(t.gates.get(ORIGIN)).toMatchObject({ active: 0, size: 0 })
    scope.cancel()
    expect(errors).toBe(210_000 / 8)
  })
})
