import http from 'node:http'
import {
  createPool,
  createScope,
  createScopedFetch,
  createTether,
  hardenServer,
  registerMetrics,
  shutdown,
  TaskGroup,
  trackConnections,
} from '@tether/core'
import { assertNoLingering } from '@tether/core/testing'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'

// A misspelt option must not pass silently: `{ timeut: 100 }` would mean no deadline at all. Every
// entry point that takes options refuses unknown keys at once, naming the key and, when one is
// close, the option it probably meant.
describe('unknown option keys are refused where options are given', () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    [
      'tether()',
      () => tetherExpress({ timeut: 100 } as never),
      /tether\(\) has no option `timeut` \(did you mean `timeout`\?\)/,
    ],
    [
      'createTether()',
      () => createTether({ stauts: 504 } as never),
      /has no option `stauts` \(did you mean `status`\?\)/,
    ],
    [
      'createScope()',
      () => createScope({ deadlne: 1 } as never),
      /has no option `deadlne` \(did you mean `deadline`\?\)/,
    ],
    ['scope.child()', () => createScope().child({ sginal: undefined } as never), /did you mean `signal`/],
    ['TaskGroup', () => new TaskGroup({ limt: 2 } as never), /has no option `limt` \(did you mean `limit`\?\)/],
    ['createPool()', () => createPool({ concurrency: 1, maxQeue: 2 } as never), /did you mean `maxQueue`/],
    [
      'pool.run()',
      () => createPool({ concurrency: 1 }).run(() => 1, { singal: undefined } as never),
      /did you mean `signal`/,
    ],
    [
      'hardenServer()',
      () => hardenServer(http.createServer(), { keepAlive: 1 } as never),
      /did you mean `keepAliveTimeout`/,
    ],
    ['shutdown()', () => shutdown(http.createServer(), { grase: 1 } as never), /did you mean `grace`/],
    ['createScopedFetch()', () => createScopedFetch({ margn: 5 } as never), /did you mean `margin`/],
    ['registerMetrics()', () => registerMetrics({ prefx: 'x_' } as never), /did you mean `prefix`/],
    [
      'a key like no option',
      () => tetherExpress({ zzzzzzzzzz: 1 } as never),
      /has no option `zzzzzzzzzz` \(known options: `timeout`/,
    ],
  ]
  it.each(cases)('%s', (_where, make, message) => {
    expect(make).toThrow(TypeError)
    expect(make).toThrow(message)
  })

  it('assertNoLingering() refuses an unknown option', async () => {
    await expect(assertNoLingering({ timout: 5 } as never)).rejects.toThrow(/did you mean `timeout`/)
  })

  it('the Fastify plugin refuses an unknown option when registered, naming it', async () => {
    const app = Fastify()
    app.register(tetherFastify, { timout: 100 } as never)
    await expect(app.ready()).rejects.toThrow(/@tether\/fastify has no option `timout` \(did you mean `timeout`\?\)/)
    await app.close()
  })

  it("the Fastify plugin accepts the keys Fastify's register() reserves, and its own", async () => {
    const app = Fastify()
    await app.register(tetherFastify, { timeout: 100, grace: 10, harden: false, logLevel: 'warn' } as never)
    await app.ready()
    await app.close()
  })

  it('createTether() refuses debugRoute, which only the adapters serve', () => {
    expect(() => createTether({ debugRoute: '/debug' } as never)).toThrow(/has no option `debugRoute`/)
    expect(() => tetherExpress({ debugRoute: '/debug' })).not.toThrow()
  })
})

describe('the lifecycle functions take a Node server, and say so when given an app', () => {
  const express5App = express()
  const cases: Array<[string, unknown, RegExp]> = [
    ['the Express app', express5App, /expects the server that app\.listen\(\) returns, not the Express app/],
    ['a plain object', {}, /expects a Node server \(http, https or http2\), received \{\}/],
    ['undefined', undefined, /expects a Node server/],
  ]
  it.each(cases)('hardenServer(), shutdown() and trackConnections() refuse %s', (_what, value, message) => {
    expect(() => hardenServer(value as never)).toThrow(TypeError)
    expect(() => hardenServer(value as never)).toThrow(message)
    expect(() => shutdown(value as never)).toThrow(message)
    expect(() => trackConnections(value as never)).toThrow(message)
  })

  it('refuses a Fastify instance, pointing at app.server', async () => {
    const app = Fastify()
    await app.ready()
    expect(() => hardenServer(app as never)).toThrow(/expects app\.server, not the Fastify instance/)
    expect(() => shutdown(app as never)).toThrow(/expects app\.server, not the Fastify instance/)
    await app.close()
  })
  it('says so in a sentence or two, not in a dump of the app (an Express app, a Fastify instance)', async () => {
    const fastifyApp = Fastify()
    await fastifyApp.ready()
    for (const app of [express(), fastifyApp]) {
      let error: unknown
      try {
        hardenServer(app as never)
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(TypeError)
      const { message } = error as TypeError
      // Before, the whole object graph was printed: 2,583 characters for Express, ~3,750 for Fastify.
      expect(message.length).toBeLessThan(300)
      expect(message).toMatch(
        /^hardenServer\(\) expects (the server that app\.listen\(\) returns|app\.server), not the/,
      )
      expect(message).toMatch(/received .*…$/)
    }
    await fastifyApp.close()
  })
})

describe('what an error message shows of a received value', () => {
  it('shows a short value whole, and cuts a long one to a line', () => {
    expect(() => createPool({ concurrency: 'eight' as never })).toThrow(/received 'eight'$/)
    const long = 'x'.repeat(500)
    let message = ''
    try {
      createPool({ concurrency: long as never })
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toMatch(/`concurrency`/)
    expect(message.length).toBeLessThan(200)
    expect(message.endsWith('…')).toBe(true)
  })
})
