import { getEventListeners } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createScope, createScopedFetch, DeadlineExceededError, isDeadlineExceeded, scopedFetch } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether } from '@tether/express'
import express from 'express'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { eventually, send } from './support/http.js'

// Nothing a test started through tether may outlive its request (goleak's VerifyNone, per test).
afterEach(() => assertNoLingering())

/** A downstream service on 127.0.0.1 that records what it receives. */
interface Downstream {
  url: string
  requests: Array<{ url: string; headers: http.IncomingHttpHeaders }>
  closedEarly: number
  server: http.Server
}

let downstream: Downstream
const servers: http.Server[] = []

async function listen(server: http.Server): Promise<string> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

beforeEach(async () => {
  const state: Omit<Downstream, 'url' | 'server'> = { requests: [], closedEarly: 0 }
  const server = http.createServer((req, res) => {
    state.requests.push({ url: req.url ?? '', headers: req.headers })
    res.on('close', () => {
      if (!res.writableEnded) state.closedEarly++
    })
    if (req.url === '/never') return
    if (req.url === '/stream') {
      // Streams forever: only a client that goes away ends it.
      res.writeHead(200, { 'content-type': 'text/plain' })
      const timer = setInterval(() => res.write('tick\n'), 20)
      res.on('close', () => clearInterval(timer))
      return
    }
    res.end(JSON.stringify({ ok: true }))
  })
  downstream = Object.assign(state, { server, url: await listen(server) })
})

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

describe('scopedFetch', () => {
  it('is plain fetch outside any scope: no budget header', async () => {
    const response = await scopedFetch(`${downstream.url}/ok`)
    expect(await response.json()).toEqual({ ok: true })
    expect(downstream.requests[0]?.headers['x-request-timeout-ms']).toBeUndefined()
  })

  it("sends the scope's remaining budget, minus a margin, in the deadline header", async () => {
    const scope = createScope({ timeout: 2_000 })
    await scope.run(async () => (await scopedFetch(`${downstream.url}/ok`)).json())
    const sent = Number(downstream.requests[0]?.headers['x-request-timeout-ms'])
    expect(sent).toBeGreaterThan(1_500)
    expect(sent).toBeLessThanOrEqual(2_000 - 10)
    scope.cancel()
  })

  it('formats the budget for grpc-timeout, and sends no header without a deadline', async () => {
    const grpcFetch = createScopedFetch({ header: 'grpc-timeout' })
    const timed = createScope({ timeout: 5_000 })
    await timed.run(async () => (await grpcFetch(`${downstream.url}/ok`)).text())
    expect(downstream.requests[0]?.headers['grpc-timeout']).toMatch(/^\d{1,8}m$/)
    const open = createScope()
    await open.run(async () => (await scopedFetch(`${downstream.url}/ok`)).text())
    expect(downstream.requests[1]?.headers['x-request-timeout-ms']).toBeUndefined()
    timed.cancel()
    open.cancel()
  })

  it('is aborted with the scope: at the deadline it rejects with DeadlineExceededError', async () => {
    const scope = createScope({ timeout: 100 })
    const error = await scope.run(() => scopedFetch(`${downstream.url}/never`).catch((e: unknown) => e))
    expect(isDeadlineExceeded(error)).toBe(true)
    await eventually(() => downstream.closedEarly === 1, 2_000, 'the downstream to see the call go away')
  })

  it('rejects at once with DeadlineExceededError, without a network call, when no budget is left', async () => {
    const scope = createScope({ timeout: 5 })
    await new Promise((resolve) => setTimeout(resolve, 20))
    const cancelled = createScope()
    cancelled.cancel(new Error('caller gone'))
    const lastMoment = createScope({ timeout: 8 }) // less than the 10 ms margin
    await expect(scope.run(() => scopedFetch(`${downstream.url}/ok`))).rejects.toBeInstanceOf(DeadlineExceededError)
    await expect(cancelled.run(() => scopedFetch(`${downstream.url}/ok`))).rejects.toThrow('caller gone')
    await expect(lastMoment.run(() => scopedFetch(`${downstream.url}/ok`))).rejects.toBeInstanceOf(
      DeadlineExceededError,
    )
    expect(downstream.requests).toEqual([])
  })

  it("combines init.signal with the scope's, and leaves no listener on either", async () => {
    const scope = createScope({ timeout: 10_000 })
    const caller = new AbortController()
    const pending = scope.run(() => scopedFetch(`${downstream.url}/never`, { signal: caller.signal }))
    await eventually(() => downstream.requests.length === 1, 2_000, 'the call to arrive')
    const reason = new Error('user pressed stop')
    caller.abort(reason)
    await expect(pending).rejects.toBe(reason)
    expect(scope.signal.aborted).toBe(false)

    const other = new AbortController()
    for (let i = 0; i < 30; i++) {
      await scope.run(async () => (await scopedFetch(`${downstream.url}/ok`, { signal: other.signal })).json())
    }
    // undici adds an abort listener to the signal it is given and never removes it; scopedFetch
    // gives it a short-lived one per call, so neither the scope's nor the caller's signal grows.
    expect(getEventListeners(scope.signal, 'abort')).toHaveLength(0)
    expect(getEventListeners(other.signal, 'abort')).toHaveLength(0)
    scope.cancel()
  })

  it('releases a body nobody read when the request ends: the downstream sees its connection closed', async () => {
    const app = express()
    app.use(tether({ logger: false }))
    app.get('/proxy', async (_req, res) => {
      const response = await scopedFetch(`${downstream.url}/stream`)
      res.json({ status: response.status }) // forgets the body, as Go code forgets Body.Close()
    })
    const url = await listen(http.createServer(app))
    const answered = await send(`${url}/proxy`)
    expect(JSON.parse(answered.body)).toEqual({ status: 200 })
    const ended = Date.now()
    await eventually(() => downstream.closedEarly === 1, 2_000, 'the downstream stream to be closed')
    expect(Date.now() - ended).toBeLessThan(1_000)
  })

  it("sends the budget in the request's own deadline header", async () => {
    const app = express()
    app.use(tether({ timeout: 3_000, deadlineHeader: 'x-budget', logger: false }))
    app.get('/call', async (_req, res) => {
      res.json(await (await scopedFetch(`${downstream.url}/ok`)).json())
    })
    const url = await listen(http.createServer(app))
    await send(`${url}/call`)
    expect(Number(downstream.requests[0]?.headers['x-budget'])).toBeLessThanOrEqual(3_000 - 10)
    expect(downstream.requests[0]?.headers['x-request-timeout-ms']).toBeUndefined()
  })

  it('validates its options', () => {
    expect(() => createScopedFetch({ margin: -1 })).toThrow(/`margin`.*-1/)
    expect(() => createScopedFetch({ fetch: 'no' as never })).toThrow(/`fetch`/)
    expect(() => createScopedFetch({ header: 5 as never })).toThrow(/`header`/)
  })
})
