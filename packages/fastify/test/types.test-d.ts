import type { Scope } from '@tether/core'
import Fastify from 'fastify'
import { describe, expectTypeOf, it } from 'vitest'
import defaultExport, { type TetherFastifyOptions, tether } from '../src/index.js'

describe('@tether/fastify types', () => {
  it('registers with typed options, as the default or the named export', async () => {
    const app = Fastify()
    await app.register(tether, { timeout: 1_000 })
    await app.register(defaultExport, { status: 504 })
    // @ts-expect-error timeout is a number
    await app.register(tether, { timeout: '1s' })
  })

  it('augments FastifyRequest with scope and route config with tether.timeout', () => {
    const app = Fastify()
    app.get('/', { config: { tether: { timeout: 100 } } }, async (request) => {
      expectTypeOf(request.scope).toEqualTypeOf<Scope>()
      return request.scope.remaining()
    })
    // @ts-expect-error config.tether.timeout is a number
    app.get('/bad', { config: { tether: { timeout: 'soon' } } }, async () => 'x')
  })

  it('takes concurrency, and a route opts out with config.tether.concurrency: false', async () => {
    const app = Fastify()
    await app.register(tether, { concurrency: 'auto' })
    app.get('/events', { config: { tether: { concurrency: false } } }, async () => 'x')
    // @ts-expect-error config.tether.concurrency is a boolean
    app.get('/bad', { config: { tether: { concurrency: 'no' } } }, async () => 'x')
    // @ts-expect-error concurrency is a number or 'auto'
    await app.register(tether, { concurrency: 'max' })
  })

  it('exports its options type', () => {
    expectTypeOf<TetherFastifyOptions['deadlineHeader']>().toEqualTypeOf<string | false | undefined>()
    expectTypeOf<TetherFastifyOptions['trustHeaders']>().toEqualTypeOf<readonly string[] | false | undefined>()
    expectTypeOf<TetherFastifyOptions['propagateHeader']>().toEqualTypeOf<string | false | undefined>()
  })
})
