import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createTether, inspect, scopedFetch } from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { type TetherExpressOptions, tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loopbackServers, send } from './support/http.js'

// Budgets from a service mesh, and the two directions of budget headers, over real servers on
// 127.0.0.1 with Node's http client: Envoy's, gRPC's and Connect's budget headers are trusted by
// default beside tether's own, the smallest wins and none extends the server's `timeout`;
// `trustHeaders` (inbound) and `propagateHeader` (outbound) are set apart.

afterEach(() => assertNoLingering())

const servers = loopbackServers()
const closers: Array<() => Promise<unknown>> = []
let downstream: string
/** The headers each call to the downstream carried. */
let received: http.IncomingHttpHeaders[] = []

const BUDGET_HEADERS = ['x-request-timeout-ms', 'x-budget', 'grpc-timeout'] as const

beforeEach(async () => {
  received = []
  downstream = await servers.listen(
    http.createServer((req, res) => {
      received.push(req.headers)
      res.end('{}')
    }),
  )
})

afterEach(async () => {
  for (const close of closers.splice(0)) await close()
  await servers.closeAll()
})

interface Seen {
  /** The request's remaining budget when its handler ran. */
  remaining: number
  /** The budget headers the downstream received from the handler's scopedFetch call, if it made one. */
  sent?: Record<string, string | undefined>
}

async function handle(remaining: number, call: boolean): Promise<Seen> {
  if (!call) return { remaining }
  const response = await scopedFetch(`${downstream}/`)
  await response.text()
  const headers = received.at(-1) ?? {}
  return {
    remaining,
    sent: Object.fromEntries(BUDGET_HEADERS.map((name) => [name, headers[name] as string | undefined])),
  }
}

type Start = (options: TetherExpressOptions) => Promise<string>

const startExpress: Start = async (options) => {
  const app = express()
  app.use(tetherExpress({ logger: false, ...options }))
  app.get('/budget', async (req, res) => {
    res.json(await handle(req.scope.remaining(), false))
  })
  app.get('/call', async (req, res) => {
    res.json(await handle(req.scope.remaining(), true))
  })
  app.get('/hang', () => undefined)
  return servers.listen(http.createServer(app))
}

const startFastify: Start = async (options) => {
  const app = Fastify()
  await app.register(tetherFastify, { logger: false, ...options })
  app.get('/budget', (request) => handle(request.scope.remaining(), false))
  app.get('/call', (request) => handle(request.scope.remaining(), true))
  app.get('/hang', () => new Promise(() => undefined))
  await app.listen({ port: 0, host: '127.0.0.1' })
  closers.push(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

async function seen(url: string, headers: Record<string, string>): Promise<Seen> {
  const response = await send(url, { headers: { connection: 'close', ...headers } })
  expect(response.status, response.body).toBe(200)
  return JSON.parse(response.body) as Seen
}

const ignored = () => inspect().counters.ignoredDeadlineHeaders

describe.each([
  ['express', startExpress],
  ['fastify', startFastify],
] as const)('%s: budgets from a service mesh', (_name, start) => {
  it.each([
    ['x-envoy-expected-rq-timeout-ms', '300', 300],
    ['grpc-timeout', '250m', 250],
    ['grpc-timeout', '1S', 1_000],
    ['connect-timeout-ms', '200', 200],
    ['x-request-timeout-ms', '150', 150],
  ])('%s: %s shortens the deadline to %i ms', async (header, value, ms) => {
    const url = await start({ timeout: 5_000 })
    const before = ignored()
    const { remaining } = await seen(`${url}/budget`, { [header]: value })
    expect(remaining).toBeLessThanOrEqual(ms)
    // Read as the budget it is, not some other unit (the bound is generous for a busy machine).
    expect(remaining).toBeGreaterThan(ms / 2)
    expect(ignored()).toBe(before)
  })

  it.each([
    ['x-envoy-expected-rq-timeout-ms', '600000'],
    ['grpc-timeout', '10M'],
    ['grpc-timeout', '1H'],
    ['connect-timeout-ms', '600000'],
    ['x-request-timeout-ms', '600000'],
  ])('%s: %s never extends the server’s own timeout', async (header, value) => {
    const url = await start({ timeout: 400 })
    const { remaining } = await seen(`${url}/budget`, { [header]: value })
    expect(remaining).toBeLessThanOrEqual(400)
  })

  it('takes the smallest of the budgets it trusts', async () => {
    const url = await start({ timeout: 5_000 })
    const { remaining } = await seen(`${url}/budget`, {
      'x-request-timeout-ms': '3000',
      'x-envoy-expected-rq-timeout-ms': '2000',
      'grpc-timeout': '400m',
      'connect-timeout-ms': '1500',
    })
    expect(remaining).toBeLessThanOrEqual(400)
    expect(remaining).toBeGreaterThan(200)
  })

  it('ignores malformed mesh budgets and counts each one', async () => {
    const url = await start({ timeout: 3_000 })
    const before = ignored()
    const { remaining } = await seen(`${url}/budget`, {
      'x-envoy-expected-rq-timeout-ms': '1.5',
      // gRPC's format only: a bare number is not a grpc-timeout.
      'grpc-timeout': '100',
      'connect-timeout-ms': '-5',
    })
    expect(remaining).toBeGreaterThan(1_500)
    expect(ignored()).toBe(before + 3)
  })

  it("answers at the mesh's deadline, with tether's status", async () => {
    const url = await start({ timeout: 5_000 })
    const started = Date.now()
    const response = await send(`${url}/hang`, {
      headers: { connection: 'close', 'x-envoy-expected-rq-timeout-ms': '80' },
    })
    expect(response.status).toBe(504)
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  it('reads only the headers `trustHeaders` names', async () => {
    const url = await start({ timeout: 3_000, trustHeaders: ['x-request-timeout-ms'] })
    const before = ignored()
    const { remaining } = await seen(`${url}/budget`, {
      'x-envoy-expected-rq-timeout-ms': '100',
      'grpc-timeout': 'bogus',
    })
    expect(remaining).toBeGreaterThan(1_500)
    // An untrusted header is not read at all: a malformed one is not counted either.
    expect(ignored()).toBe(before)
    expect((await seen(`${url}/budget`, { 'x-request-timeout-ms': '100' })).remaining).toBeLessThanOrEqual(100)
  })
})

describe.each([
  ['express', startExpress],
  ['fastify', startFastify],
] as const)('%s: trusting budgets inbound and sending them outbound are separate', (_name, start) => {
  it('`trustHeaders: false` ignores every incoming budget, and still sends its own downstream', async () => {
    const url = await start({ timeout: 3_000, trustHeaders: false })
    const { remaining, sent } = await seen(`${url}/call`, {
      'x-request-timeout-ms': '100',
      'x-envoy-expected-rq-timeout-ms': '100',
    })
    expect(remaining).toBeGreaterThan(1_500)
    expect(Number(sent?.['x-request-timeout-ms'])).toBeGreaterThan(1_500)
    expect(Number(sent?.['x-request-timeout-ms'])).toBeLessThanOrEqual(3_000)
  })

  it('`propagateHeader: false` trusts incoming budgets, and sends none downstream', async () => {
    const url = await start({ timeout: 3_000, propagateHeader: false })
    const { remaining, sent } = await seen(`${url}/call`, { 'x-request-timeout-ms': '800' })
    expect(remaining).toBeLessThanOrEqual(800)
    expect(sent).toEqual({ 'x-request-timeout-ms': undefined, 'x-budget': undefined, 'grpc-timeout': undefined })
  })

  it('`propagateHeader` names the header sent downstream, in its own format', async () => {
    const url = await start({ timeout: 3_000, propagateHeader: 'grpc-timeout' })
    const { remaining, sent } = await seen(`${url}/call`, { 'x-request-timeout-ms': '800' })
    expect(remaining).toBeLessThanOrEqual(800)
    expect(sent?.['x-request-timeout-ms']).toBeUndefined()
    expect(sent?.['grpc-timeout']).toMatch(/^[0-9]+m$/)
    expect(Number.parseInt(sent?.['grpc-timeout'] ?? '', 10)).toBeLessThanOrEqual(800)
  })

  it('`deadlineHeader` renames tether’s own header both ways, and the mesh headers are still trusted', async () => {
    const url = await start({ timeout: 3_000, deadlineHeader: 'x-budget' })
    const own = await seen(`${url}/call`, { 'x-budget': '700' })
    expect(own.remaining).toBeLessThanOrEqual(700)
    expect(Number(own.sent?.['x-budget'])).toBeLessThanOrEqual(700)
    expect(own.sent?.['x-request-timeout-ms']).toBeUndefined()
    const mesh = await seen(`${url}/call`, { 'connect-timeout-ms': '600' })
    expect(mesh.remaining).toBeLessThanOrEqual(600)
    expect(Number(mesh.sent?.['x-budget'])).toBeLessThanOrEqual(600)
  })

  it('`deadlineHeader: false` still means what it meant: nothing trusted, nothing sent', async () => {
    const url = await start({ timeout: 3_000, deadlineHeader: false })
    const { remaining, sent } = await seen(`${url}/call`, {
      'x-request-timeout-ms': '100',
      'grpc-timeout': '100m',
    })
    expect(remaining).toBeGreaterThan(1_500)
    expect(sent).toEqual({ 'x-request-timeout-ms': undefined, 'x-budget': undefined, 'grpc-timeout': undefined })
  })

  it('`deadlineHeader: false` with `trustHeaders` or `propagateHeader` does what those say', async () => {
    const url = await start({
      timeout: 3_000,
      deadlineHeader: false,
      trustHeaders: ['grpc-timeout'],
      propagateHeader: 'x-budget',
    })
    const { remaining, sent } = await seen(`${url}/call`, {
      'x-request-timeout-ms': '100',
      'grpc-timeout': '700m',
    })
    expect(remaining).toBeLessThanOrEqual(700)
    expect(remaining).toBeGreaterThan(350)
    expect(Number(sent?.['x-budget'])).toBeLessThanOrEqual(700)
  })
})

describe('createTether(): which headers each direction uses', () => {
  it('trusts tether’s own header and the mesh’s by default, each once, and sends tether’s own', () => {
    expect(createTether()).toMatchObject({
      deadlineHeader: 'x-request-timeout-ms',
      trustHeaders: ['x-request-timeout-ms', 'x-envoy-expected-rq-timeout-ms', 'grpc-timeout', 'connect-timeout-ms'],
      propagateHeader: 'x-request-timeout-ms',
      status: 504,
    })
    expect(createTether({ deadlineHeader: 'grpc-timeout' }).trustHeaders).toEqual([
      'grpc-timeout',
      'x-envoy-expected-rq-timeout-ms',
      'connect-timeout-ms',
    ])
    expect(createTether({ trustHeaders: ['x-budget', 'x-budget'] }).trustHeaders).toEqual(['x-budget'])
  })

  it('sets each direction apart', () => {
    expect(createTether({ trustHeaders: [] })).toMatchObject({
      trustHeaders: [],
      propagateHeader: 'x-request-timeout-ms',
    })
    expect(createTether({ propagateHeader: false })).toMatchObject({
      trustHeaders: expect.arrayContaining(['x-request-timeout-ms']),
      propagateHeader: undefined,
    })
    expect(createTether({ deadlineHeader: false })).toMatchObject({
      deadlineHeader: undefined,
      trustHeaders: [],
      propagateHeader: undefined,
    })
  })

  it('refuses a header list with a hole, naming the entry', () => {
    const sparse: string[] = []
    sparse[1] = 'x-budget'
    expect(() => createTether({ trustHeaders: sparse })).toThrow(
      /`trustHeaders\[0\]` must be a header name, received undefined/,
    )
  })
})
