import http from 'node:http'
import { Socket } from 'node:net'
import { CanceledError, createTether, inspect } from '@tether/core'
import { scopeOfResponse } from '@tether/core/adapter'
import { assertNoLingering } from '@tether/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { emptyListsArmed } from '../packages/core/src/primitives/timers.js'
import { connect, eventually, hangUpWhen, inRoute, send } from './support/http.js'
import { frameworks, type TestServer } from './support/servers.js'

// Nothing a test started through tether may outlive its request (goleak's VerifyNone, per test).
afterEach(() => assertNoLingering())

// What a request scope promises, checked against real servers on 127.0.0.1, identically for both
// adapters. Timing bounds are generous (shared 2-core CI machines); the assertions are about what
// happens and in which order, not about the scheduler's precision.
const DEADLINE = 80
const PROMPT_MS = 400

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

describe.each(frameworks)('$name: what a request scope promises', (framework) => {
  it('answers the timeout status promptly at the deadline, and the fan-out is told to stop', async () => {
    server = await framework.start({ timeout: DEADLINE })
    const started = Date.now()
    const response = await send(`${server.url}/work?ms=5000`)
    const elapsed = Date.now() - started
    expect(response.status).toBe(504)
    expect(JSON.parse(response.body)).toMatchObject({ code: 'TETHER_DEADLINE_EXCEEDED' })
    // The budget is spent: nothing tells a proxy or client to try again (shutdown answers do).
    expect(response.headers['retry-after']).toBeUndefined()
    expect(elapsed).toBeGreaterThanOrEqual(DEADLINE - 5)
    expect(elapsed).toBeLessThan(DEADLINE + PROMPT_MS)
    await eventually(() => server?.events.includes('work stopped: DeadlineExceededError') ?? false)
  })

  it.each(['late-write', 'late-throw', 'late-timer'])(
    'swallows and counts what /%s does after the deadline, and keeps the connection usable',
    async (route) => {
      server = await framework.start({ timeout: DEADLINE })
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const before = inspect().counters.lateWrites
      const response = await send(`${server.url}/${route}`, { agent })
      expect(response.status).toBe(504)
      expect(JSON.parse(response.body).code).toBe('TETHER_DEADLINE_EXCEEDED')
      await eventually(() => inspect().counters.lateWrites > before, 2_000, 'the late write')
      // The late write did not destroy the kept-alive connection: the next request reuses it.
      const next = await send(`${server.url}/fast`, { agent })
      expect(next.status).toBe(200)
      expect(next.reusedSocket).toBe(true)
      agent.destroy()
    },
  )

  it('cuts a streaming response at the deadline in a way the client can see', async () => {
    server = await framework.start({ timeout: DEADLINE })
    const response = await send(`${server.url}/stream`)
    expect(response.status).toBe(200)
    expect(response.body).toBe('partial ')
    expect(response.cut).toBe(true)
    expect(server.events).toContain('stream: deadline exceeded')
  })

  it('aborts the signal with CanceledError when the client hangs up, and counts it', async () => {
    server = await framework.start()
    const before = inspect().counters.clientClosed
    await hangUpWhen(`${server.url}/hang`, inRoute('/hang'), 'the request to reach /hang')
    await eventually(() => server?.events.includes('hang: client closed the connection') ?? false)
    expect(inspect().counters.clientClosed).toBe(before + 1)
    await eventually(() => inspect().inflight.length === 0, 2_000, 'no request in flight')
  })

  it('does not treat reading a POST body as a hang-up, even a body sent slowly', async () => {
    server = await framework.start()
    const quick = await send(`${server.url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hello: 'world' }),
    })
    expect(JSON.parse(quick.body)).toEqual({ body: { hello: 'world' }, aborted: false })

    // The body arrives in two parts 50 ms apart; Node's req 'close' fires once it is read.
    const socket = await connect(server.url)
    const body = JSON.stringify({ slow: true })
    const reply = new Promise<string>((resolve) => {
      let data = ''
      socket.on('data', (chunk) => {
        data += chunk
        if (data.includes('}')) resolve(data)
      })
    })
    socket.write(
      `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`,
    )
    await new Promise((resolve) => setTimeout(resolve, 50))
    socket.write(body.slice(5))
    const raw = await reply
    socket.destroy()
    expect(raw).toMatch(/^HTTP\/1.1 200/)
    expect(raw).toContain('{"body":{"slow":true},"aborted":false}')
  })

  it('leaves nothing in flight after 400 concurrent requests, half of them past their deadline', async () => {
    // The slow half carries a 150 ms budget of its own; the quick half has the server's generous
    // deadline, so that on two busy cores a quick request queued behind 400 others is not late.
    server = await framework.start({ timeout: 20_000 })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
    const url = server.url
    const responses = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        i % 2 === 0
          ? send(`${url}/work?ms=5`, { agent })
          : send(`${url}/work?ms=5000`, { agent, headers: { 'x-request-timeout-ms': '150' } }),
      ),
    )
    agent.destroy()
    const statuses = responses.map((response) => response.status)
    expect(statuses.filter((status) => status === 200)).toHaveLength(200)
    expect(statuses.filter((status) => status === 504)).toHaveLength(200)
    await eventually(() => inspect().inflight.length === 0, 2_000, 'no request in flight')
  })
})

describe.each(frameworks)('$name: deadline timers', (framework) => {
  it('leaves at most one shared timer armed after requests whose budget headers all differ', async () => {
    server = await framework.start({ timeout: 60_000 })
    const responses = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        send(`${server?.url}/fast`, { headers: { 'x-request-timeout-ms': String(30_000 + index * 13) } }),
      ),
    )
    for (const response of responses) expect(response.status).toBe(200)
    await eventually(() => inspect().inflight.length === 0, 2_000, 'nothing in flight')
    // Each of the forty delays had a timer of its own; of those, one at most is still armed.
    expect(emptyListsArmed()).toBeLessThanOrEqual(1)
  })
})

describe('createTether().attach() on a request built by hand', () => {
  // What in-memory transports, test helpers and the in-process benchmark make: a request whose
  // socket was never accepted by a server, so Node leaves its `server` null.
  it('binds a request whose socket has no server, and ends its scope when the response closes', () => {
    const socket = new Socket()
    expect((socket as Socket & { server?: unknown }).server).toBeNull()
    const req = new http.IncomingMessage(socket)
    req.method = 'GET'
    req.headers = { 'x-request-timeout-ms': '500' }
    const res = new http.ServerResponse(req)
    const binding = createTether({ timeout: 5_000, logger: false })
    const scope = binding.attach(req, res)
    expect(scope.remaining()).toBeLessThanOrEqual(500)
    expect(inspect().inflight).toHaveLength(1)
    res.emit('close')
    expect(scope.signal.aborted).toBe(true)
    expect(scope.signal.reason).toBeInstanceOf(CanceledError)
    expect(inspect().inflight).toHaveLength(0)
  })

  it.each([
    ["Node's own", (res: http.ServerResponse) => res],
    // What Express does to every response: Object.setPrototypeOf(res, app.response).
    [
      'a replaced',
      (res: http.ServerResponse) => Object.setPrototypeOf(res, Object.create(http.ServerResponse.prototype)),
    ],
  ])(
    'finds the request of a response with %s prototype, also once it has closed, and binds it once',
    (prototype, adapt) => {
      const req = new http.IncomingMessage(new Socket())
      req.method = 'GET'
      const res = adapt(new http.ServerResponse(req)) as http.ServerResponse
      const before = inspect().counters.requests
      const binding = createTether({ logger: false })
      expect(scopeOfResponse(res)).toBeUndefined()
      const scope = binding.attach(req, res)
      expect(scopeOfResponse(res)).toBe(scope)
      expect(binding.attach(req, res)).toBe(scope) // a second binding joins the first
      res.emit('close')
      expect(inspect().inflight).toHaveLength(0)
      // Work that outlived the request still finds its scope, aborted; binding it again adds nothing.
      expect(scopeOfResponse(res)).toBe(scope)
      expect(binding.attach(req, res)).toBe(scope)
      expect(scope.signal.aborted).toBe(true)
      res.emit('close')
      expect(inspect().inflight).toHaveLength(0)
      expect(inspect().counters.requests - before).toBe(1)
      // Where the record is kept (see response-record.ts): on Node 22's V8, a response whose
      // prototype was replaced keeps it in a WeakMap instead of a property that costs 1.5 µs to add.
      const inWeakMap = Number(process.versions.v8.split('.')[0]) < 13 && prototype === 'a replaced'
      expect(Object.getOwnPropertySymbols(res).includes(Symbol.for('tether.request'))).toBe(!inWeakMap)
    },
  )
})
