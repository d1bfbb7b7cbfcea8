import type { Scope } from '@tether/core'
import express, { type RequestHandler } from 'express'
import { describe, expectTypeOf, it } from 'vitest'
import { type TetherExpressOptions, tether, timeout, unlimited } from '../src/index.js'

describe('@tether/express types', () => {
  it('returns Express middleware from tether() and timeout()', () => {
    expectTypeOf(tether()).toEqualTypeOf<RequestHandler>()
    expectTypeOf(tether({ timeout: 1_000, status: 504, deadlineHeader: false })).toEqualTypeOf<RequestHandler>()
    expectTypeOf(timeout(100)).toEqualTypeOf<RequestHandler>()
    // @ts-expect-error timeout takes milliseconds
    timeout('100')
    // @ts-expect-error status is a number
    tether({ status: '503' })
    expectTypeOf(
      tether({ trustHeaders: ['grpc-timeout'], propagateHeader: 'x-budget' }),
    ).toEqualTypeOf<RequestHandler>()
    expectTypeOf(tether({ trustHeaders: false, propagateHeader: false })).toEqualTypeOf<RequestHandler>()
    // @ts-expect-error trustHeaders is a list of names, or false
    tether({ trustHeaders: 'grpc-timeout' })
  })

  it('augments Request with scope', () => {
    const app = express()
    app.use(tether())
    app.get('/', (req, res) => {
      expectTypeOf(req.scope).toEqualTypeOf<Scope>()
      expectTypeOf(req.scope.signal).toEqualTypeOf<AbortSignal>()
      res.json({ remaining: req.scope.remaining() })
    })
  })

  it('exports its options type', () => {
    expectTypeOf<TetherExpressOptions['timeout']>().toEqualTypeOf<number | undefined>()
    expectTypeOf<TetherExpressOptions['concurrency']>().toEqualTypeOf<number | 'auto' | undefined>()
  })

  it('takes concurrency as a number or auto, and exempts routes with unlimited()', () => {
    expectTypeOf(tether({ concurrency: 'auto' })).toEqualTypeOf<RequestHandler>()
    expectTypeOf(tether({ concurrency: 8 })).toEqualTypeOf<RequestHandler>()
    expectTypeOf(unlimited()).toEqualTypeOf<RequestHandler>()
    // @ts-expect-error concurrency is a number or 'auto'
    tether({ concurrency: 'max' })
  })
})
