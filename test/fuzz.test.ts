import http from 'node:http'
import type { AddressInfo } from 'node:net'
import util from 'node:util'
import {
  all,
  createPool,
  createScope,
  createScopedFetch,
  createTether,
  DEFAULT_DEADLINE_HEADER,
  formatBudget,
  GRPC_TIMEOUT_HEADER,
  inspect,
  parseBudget,
  TaskGroup,
} from '@tether/core'
import { tether as tetherExpress } from '@tether/express'
import { tether as tetherFastify } from '@tether/fastify'
import express from 'express'
import fc from 'fast-check'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import request from 'supertest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// Fuzzing of everything tether reads from outside: the deadline header a client sends, and every
// option a program passes. The oracles below are written from the documented rules, not from the
// code under test.

const digit = fc.constantFrom(...'0123456789')
const digits = (minLength: number, maxLength: number) => fc.string({ unit: digit, minLength, maxLength })

/** Numbers written every odd way a client might: signs, exponents, padding, units, other scripts. */
const oddNumbers = fc.oneof(
  fc.double().map(String),
  fc.double().map((n) => n.toExponential()),
  fc.double({ noNaN: true, min: -1e12, max: 1e12 }).map((n) => n.toFixed(2)),
  fc.integer().map(String),
  fc.bigInt().map(String),
  fc.nat().map((n) => `0x${n.toString(16)}`),
  fc.nat().map((n) => `0b${n.toString(2)}`),
  fc
    .tuple(
      fc.constantFrom('', '', '+', '-', ' ', '\t', '\n', '\u00a0', '\ufeff', '0', '00'),
      digits(1, 12),
      fc.constantFrom('', '', ' ', '\t', '\n', '\r\n', '.', '.0', 'e3', 'E-1', 'ms', 'm', 'S', '_000', ',', '\u0000'),
    )
    .map((parts) => parts.join('')),
  fc.array(digits(1, 6), { minLength: 2, maxLength: 4 }).map((values) => values.join(', ')),
  fc.array(digits(1, 6), { minLength: 2, maxLength: 4 }).map((values) => values.join(',')),
  digits(9, 40),
  digits(1, 10).map((d) => d.replace(/[0-9]/g, (c) => String.fromCharCode(0xff10 + Number(c)))),
  digits(1, 10).map((d) => d.replace(/[0-9]/g, (c) => String.fromCharCode(0x0660 + Number(c)))),
  fc.constantFrom(
    'Infinity',
    '-Infinity',
    'NaN',
    '1e3',
    '0x10',
    '1_000',
    '\u{1d7cf}\u{1d7d0}',
    '__proto__',
    'constructor',
    'toString',
    '',
    ' ',
    'null',
    'undefined',
    '[object Object]',
    '9999999999',
    '10000000000',
    '0000000000',
    '00000000001',
  ),
)

/** gRPC-timeout-like values: digits (0-10 of them) and a unit, right or wrong. */
const grpcish = fc
  .tuple(
    digits(0, 10),
    fc.constantFrom('H', 'M', 'S', 'm', 'u', 'n', 'h', 's', '', 'ms', 'x', ' ', 'S ', 'mS', 'µ'),
    fc.constantFrom('', '', ' ', '\n'),
  )
  .map((parts) => parts.join(''))

const anyString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary-ascii' }),
  oddNumbers,
  grpcish,
  digits(0, 12),
)

const GRPC_UNITS: Record<string, (n: number) => number> = {
  H: (n) => n * 3_600_000,
  M: (n) => n * 60_000,
  S: (n) => n * 1_000,
  m: (n) => n,
  u: (n) => Math.floor(n / 1_000),
  n: (n) => Math.floor(n / 1_000_000),
}

/** What a header value is worth, by the documented format of `header`. */
function expectedBudget(value: string, header: string): number | undefined {
  if (header === GRPC_TIMEOUT_HEADER) {
    if (!/^[0-9]{1,8}[HMSmun]$/.test(value)) return undefined
    return (GRPC_UNITS[value.slice(-1)] as (n: number) => number)(Number.parseInt(value.slice(0, -1), 10))
  }
  return /^[0-9]{1,10}$/.test(value) ? Number.parseInt(value, 10) : undefined
}

describe('parseBudget/formatBudget: fuzzing', () => {
  it('parseBudget never throws and reads a budget only from 1-10 ASCII digits (any header but grpc-timeout)', () => {
    fc.assert(
      fc.property(
        anyString,
        fc.constantFrom(undefined, DEFAULT_DEADLINE_HEADER, 'x-budget', 'GRPC-TIMEOUT'),
        (value, header) => {
          const budget = parseBudget(value, header)
          if (budget !== undefined) {
            expect(Number.isSafeInteger(budget)).toBe(true)
            expect(budget).toBeGreaterThanOrEqual(0)
          }
          expect(budget).toBe(expectedBudget(value, header ?? DEFAULT_DEADLINE_HEADER))
        },
      ),
      { numRuns: 3_000 },
    )
  })

  it('parseBudget reads grpc-timeout only as 1-8 ASCII digits and a unit, in whole milliseconds rounded down', () => {
    fc.assert(
      fc.property(anyString, (value) => {
        const budget = parseBudget(value, GRPC_TIMEOUT_HEADER)
        if (budget !== undefined) {
          expect(Number.isSafeInteger(budget)).toBe(true)
          expect(budget).toBeGreaterThanOrEqual(0)
        }
        expect(budget).toBe(expectedBudget(value, GRPC_TIMEOUT_HEADER))
      }),
      { numRuns: 3_000 },
    )
  })

  it('parseBudget returns undefined for whatever is not a single string: arrays, absent, other values', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.array(anyString, { maxLength: 3 }), fc.anything(), fc.constant(undefined)),
        fc.constantFrom(DEFAULT_DEADLINE_HEADER, GRPC_TIMEOUT_HEADER),
        (value, header) => {
          fc.pre(typeof value !== 'string')
          expect(parseBudget(value as string[], header)).toBeUndefined()
        },
      ),
      { numRuns: 500 },
    )
  })

  it('a budget written with formatBudget reads back as itself, rounded down (10-digit range, and grpc-timeout)', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 9_999_999_999 }), fc.double({ min: 0, max: 9_999_999_999, noNaN: true })),
        (ms) => {
          expect(parseBudget(formatBudget(ms))).toBe(Math.floor(ms))
          expect(parseBudget(formatBudget(ms, DEFAULT_DEADLINE_HEADER), DEFAULT_DEADLINE_HEADER)).toBe(Math.floor(ms))
          const grpc = parseBudget(formatBudget(ms, GRPC_TIMEOUT_HEADER), GRPC_TIMEOUT_HEADER)
          expect(grpc).toBeDefined()
          expect(grpc as number).toBeLessThanOrEqual(ms)
          expect(grpc as number).toBeGreaterThanOrEqual(0)
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('the formatBudget/parseBudget round trip never grows a finite budget, nor turns it into no budget at all', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
          fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true, noDefaultInfinity: true }),
        ),
        fc.constantFrom(DEFAULT_DEADLINE_HEADER, GRPC_TIMEOUT_HEADER),
        (ms, header) => {
          const read = parseBudget(formatBudget(ms, header), header)
          expect(read, `${header}: ${formatBudget(ms, header)}`).toBeDefined()
          expect(read as number).toBeLessThanOrEqual(ms)
        },
      ),
      {
        numRuns: 2_000,
        examples: [
          [9_999_999_999, DEFAULT_DEADLINE_HEADER],
          [1e15, GRPC_TIMEOUT_HEADER],
        ],
      },
    )
  })
})

const HEADER = DEFAULT_DEADLINE_HEADER
const TIMEOUT = 2_000

/** A character Node's HTTP client sends in a header value: tab, printable ASCII, or latin1. */
const latin1Char = fc
  .oneof(
    { arbitrary: fc.integer({ min: 0x20, max: 0x7e }), weight: 6 },
    { arbitrary: fc.constant(0x09), weight: 1 },
    { arbitrary: fc.integer({ min: 0x80, max: 0xff }), weight: 2 },
  )
  .map((code) => String.fromCharCode(code))
const sendable = (value: string) => !/[^\t\x20-\x7e\x80-\xff]/.test(value)

const headerValue = fc.oneof(
  fc.string({ unit: latin1Char, maxLength: 16 }),
  // UTF-8 text as a Node server receives it: its bytes, read as latin1.
  fc
    .string({ unit: 'binary', maxLength: 6 })
    .map((text) => Buffer.from(text, 'utf8').toString('latin1'))
    .filter(sendable),
  fc.integer({ min: 0, max: 9_999_999_999 }).map(String),
  fc.integer({ min: 0, max: 100 }).map(String),
  fc.tuple(digits(1, 3), fc.integer({ min: 50, max: 9_999 })).map(([zeros, n]) => `${zeros}${n}`.slice(-10)),
  digits(11, 14),
  oddNumbers.filter(sendable),
  fc
    .tuple(fc.constantFrom(' ', '\t', ''), fc.integer({ min: 50, max: 5_000 }), fc.constantFrom(' ', '\t', ''))
    .map((parts) => parts.join('')),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', '100, 200'),
)
const headerValues = fc.oneof(
  { arbitrary: headerValue, weight: 4 },
  { arbitrary: fc.array(headerValue, { minLength: 1, maxLength: 3 }), weight: 1 },
)

/** The value a handler sees: repeated headers joined with ", ", each trimmed when it came over the wire. */
function seenValue(value: string | string[], trimmed: boolean): string {
  const values = Array.isArray(value) ? value : [value]
  return values.map((one) => (trimmed ? one.replace(/^[ \t]+|[ \t]+$/g, '') : one)).join(', ')
}

const ignoredHeaders = () => inspect().counters.ignoredDeadlineHeaders

/** What one request with `value` must have produced. */
function expectAnswer(
  value: string | string[],
  seen: string,
  ignored: number,
  status: number,
  body: { remaining?: unknown; received?: unknown; code?: unknown },
) {
  const budget = /^[0-9]{1,10}$/.test(seen) ? Number(seen) : undefined
  // A malformed value is counted once, a valid one not at all.
  expect(ignored, `ignored count for ${JSON.stringify(value)}`).toBe(budget === undefined ? 1 : 0)
  if (status === 504) {
    // Only a budget that was too small to answer in may expire.
    expect(budget, `504 for ${JSON.stringify(value)}`).toBeDefined()
    expect(budget as number).toBeLessThan(50)
    expect(body.code).toBe('TETHER_DEADLINE_EXCEEDED')
    return
  }
  expect(status, `status for ${JSON.stringify(value)}`).toBe(200)
  expect(body.received).toBe(seen)
  const remaining = body.remaining as number
  expect(remaining).toBeGreaterThanOrEqual(0)
  expect(remaining).toBeLessThanOrEqual(TIMEOUT)
  if (budget !== undefined) expect(remaining).toBeLessThanOrEqual(budget)
}

describe('the deadline header over real servers: fuzzing', () => {
  let server: http.Server
  let url: string
  let fastify: FastifyInstance

  beforeAll(async () => {
    const app = express()
    app.use(tetherExpress({ timeout: TIMEOUT, logger: false }))
    app.get('/', (req, res) => {
      res.json({ remaining: req.scope.remaining(), received: req.headers[HEADER] ?? null })
    })
    server = http.createServer(app)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

    fastify = Fastify()
    await fastify.register(tetherFastify, { timeout: TIMEOUT, logger: false })
    fastify.get('/', async (req) => ({ remaining: req.scope.remaining(), received: req.headers[HEADER] ?? null }))
    await fastify.ready()
  })

  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    await fastify.close()
  })

  it('Express: any header value is answered (never a 5xx but a legitimately expired budget), counted once if malformed', async () => {
    await fc.assert(
      fc.asyncProperty(headerValues, async (value) => {
        const before = ignoredHeaders()
        const response = await request(url)
          .get('/')
          .set(HEADER, value as string)
        expectAnswer(value, seenValue(value, true), ignoredHeaders() - before, response.status, response.body)
      }),
      { numRuns: 100 },
    )
    // Still serving.
    await request(url).get('/').expect(200)
  })

  it('Fastify: any header value is answered (never a 5xx but a legitimately expired budget), counted once if malformed', async () => {
    await fc.assert(
      fc.asyncProperty(headerValues, async (value) => {
        const before = ignoredHeaders()
        const response = await fastify.inject({ method: 'GET', url: '/', headers: { [HEADER]: value } })
        expectAnswer(value, seenValue(value, false), ignoredHeaders() - before, response.statusCode, response.json())
      }),
      { numRuns: 100 },
    )
    expect((await fastify.inject({ method: 'GET', url: '/' })).statusCode).toBe(200)
  })
})

// Options. Each rule says, for one option, whether a value is valid and, if not, which error
// classes may report it: the documented rules, written out independently.

type ErrorClass = typeof TypeError | typeof RangeError
type Verdict = { readonly valid: true } | { readonly valid: false; readonly errors: readonly ErrorClass[] }
type Rule = (value: unknown) => Verdict & { readonly names?: readonly string[] }

const valid: Verdict = { valid: true }
const typeError: Verdict = { valid: false, errors: [TypeError] }
const rangeError: Verdict = { valid: false, errors: [RangeError] }
const eitherError: Verdict = { valid: false, errors: [TypeError, RangeError] }

const isOptionsObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const optional =
  (rule: Rule): Rule =>
  (value) =>
    value === undefined ? valid : rule(value)

/** Milliseconds: a finite number ≥ 0 (> 0 when `positive`); never a string. */
const duration = (positive = false): Rule =>
  optional((value) => {
    if (typeof value !== 'number') return typeError
    return Number.isFinite(value) && value >= 0 && !(positive && value === 0) ? valid : rangeError
  })
/** A count: a safe integer ≥ `min`, or Infinity where allowed. */
const count = (min: number, infinity: boolean): Rule => {
  return (value) => {
    if (typeof value !== 'number') return typeError
    return (Number.isSafeInteger(value) && value >= min) || (infinity && value === Number.POSITIVE_INFINITY)
      ? valid
      : rangeError
  }
}
const timestamp: Rule = optional((value) => {
  if (typeof value !== 'number') return typeError
  return Number.isFinite(value) ? valid : rangeError
})
/** An AbortSignal, or something that can stand for one: `aborted`, and both listener methods. */
const signal: Rule = optional((value) => {
  if (value instanceof AbortSignal) return valid
  const like = value as { aborted?: unknown; addEventListener?: unknown; removeEventListener?: unknown } | null
  return typeof value === 'object' &&
    like !== null &&
    typeof like.aborted === 'boolean' &&
    typeof like.addEventListener === 'function' &&
    typeof like.removeEventListener === 'function'
    ? valid
    : typeError
})
const status: Rule = optional((value) => {
  if (typeof value !== 'number') return typeError
  return Number.isInteger(value) && value >= 500 && value <= 599 ? valid : rangeError
})
// RFC 9110 token characters, lowercase letters only, and not the name of an Object property
// (Node's headers object has a prototype, so `constructor` would always seem present).
const lowercaseToken = /^[a-z0-9!#$%&'*+\-.^_`|~]+$/
const isHeaderName = (value: unknown) =>
  typeof value === 'string' && lowercaseToken.test(value) && !(value in Object.prototype)
const deadlineHeader: Rule = optional((value) => (value === false || isHeaderName(value) ? valid : eitherError))
// A list of header names (holes are not names), or false for none; a bad entry is named by its index.
const trustHeaders: Rule = optional((value) => {
  if (value === false) return valid
  if (!Array.isArray(value)) return typeError
  const bad = Array.from(value as unknown[]).findIndex((name) => !isHeaderName(name))
  return bad === -1 ? valid : { ...typeError, names: [`trustHeaders[${bad}]`] }
})
const boolean: Rule = optional((value) => (typeof value === 'boolean' ? valid : typeError))
const logger: Rule = optional((value) =>
  value === false ||
  ((typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { warn?: unknown }).warn === 'function')
    ? valid
    : typeError,
)
const debugRoute: Rule = optional((value) =>
  typeof value === 'string' && value.startsWith('/') && !/[?#\s]/.test(value) ? valid : eitherError,
)
const hardenTimeouts: Record<string, Rule> = {
  headersTimeout: duration(true),
  requestTimeout: duration(),
  keepAliveTimeout: duration(true),
  checkInterval: duration(true),
  writeTimeout: duration(),
  minResponseRate: duration(),
  minRateGrace: duration(),
  maxIdleConnections: optional(count(0, true)),
}
const harden: Rule = optional((value) => {
  if (value === true || value === false) return valid
  if (!isOptionsObject(value)) return typeError
  const invalid = Object.entries(hardenTimeouts).filter(([name, rule]) => !rule(value[name]).valid)
  if (invalid.length > 0) return { ...eitherError, names: ['harden', ...invalid.map(([name]) => name)] }
  const headers = (value.headersTimeout as number | undefined) ?? 10_000
  const total = (value.requestTimeout as number | undefined) ?? 30_000
  if (total !== 0 && headers > total) return { ...rangeError, names: ['harden', 'headersTimeout', 'requestTimeout'] }
  // The rate is measured after the grace period: a rate with no grace cannot be measured.
  if (value.minRateGrace === 0 && ((value.minResponseRate as number | undefined) ?? 240) > 0) {
    return { ...rangeError, names: ['harden', 'minRateGrace'] }
  }
  return valid
})

// The request path's limit: an integer ≥ 1, or 'auto' (no Infinity: absent means no limit).
const concurrency: Rule = optional((value) => (value === 'auto' ? valid : count(1, false)(value)))

const tetherRules: Record<string, Rule> = {
  timeout: duration(true),
  status,
  deadlineHeader,
  trustHeaders,
  propagateHeader: deadlineHeader,
  leakAfter: duration(),
  captureStacks: boolean,
  logger,
  debugRoute,
  concurrency,
}

interface Target {
  readonly name: string
  /** Options every call gets, besides the one being fuzzed. */
  readonly base: Record<string, unknown>
  readonly rules: Record<string, Rule>
  /** Keys accepted without a rule of their own (Fastify's reserved register() options). */
  readonly ignored?: readonly string[]
  /** Calls the API with `options` and disposes of what it made; throws or rejects as the API does. */
  call(options: unknown): unknown
}

const targets: Target[] = [
  {
    name: 'createScope()',
    base: {},
    rules: { timeout: duration(), deadline: timestamp, signal },
    call: (options) => createScope(options as never).cancel(),
  },
  {
    name: 'scope.child()',
    base: {},
    rules: { timeout: duration(), deadline: timestamp, signal },
    call: (options) => {
      const parent = createScope()
      try {
        parent.child(options as never).cancel()
      } finally {
        parent.cancel()
      }
    },
  },
  {
    name: 'createPool()',
    base: { concurrency: 1 },
    rules: {
      concurrency: count(1, true),
      maxQueue: optional(count(0, true)),
      retryAfter: optional(count(0, false)),
      deadlineAware: boolean,
    },
    call: (options) => createPool(options as never),
  },
  {
    name: 'pool.run()',
    base: {},
    rules: { signal },
    call: (options) => {
      // A valid but aborted signal rejects the run with its reason: that is not a validation error.
      createPool({ concurrency: 1 })
        .run(() => 'done', options as never)
        .catch(() => undefined)
    },
  },
  {
    name: 'new TaskGroup()',
    base: {},
    rules: { limit: optional(count(1, true)), signal },
    call: (options) => {
      const group = new TaskGroup(options as never)
      group.go(() => 'done')
      group.wait().catch(() => undefined)
    },
  },
  {
    name: 'all()',
    base: {},
    rules: { limit: optional(count(1, true)), signal },
    call: async (options) => {
      try {
        await all([() => 'done'], options as never)
      } catch (error) {
        // Rejecting with the reason of a signal that has aborted is what all() is for.
        const given = (options as { signal?: { aborted?: unknown; reason?: unknown } } | undefined)?.signal
        if (given?.aborted === true && error === given.reason) return
        throw error
      }
    },
  },
  {
    // `fetch` is left out: giving it together with a transport option is refused as a pair.
    name: 'createScopedFetch()',
    base: {},
    rules: {
      connections: optional(count(1, false)),
      maxQueue: optional(count(0, true)),
      keepAliveTimeout: duration(true),
      headersTimeout: duration(true),
      bodyTimeout: duration(true),
      margin: duration(),
      retryAfter: optional(count(0, false)),
      header: deadlineHeader,
    },
    // Makes no dispatcher until its first call: nothing to dispose of.
    call: (options) => createScopedFetch(options as never),
  },
  {
    name: 'createTether()',
    base: {},
    // Only the adapters serve a debug route, so only they take the option.
    rules: Object.fromEntries(Object.entries(tetherRules).filter(([name]) => name !== 'debugRoute')),
    call: (options) => createTether(options as never),
  },
  { name: 'tether() for Express', base: {}, rules: tetherRules, call: (options) => tetherExpress(options as never) },
  {
    name: 'the Fastify plugin',
    base: {},
    rules: { ...tetherRules, harden, grace: duration() },
    ignored: ['prefix', 'logLevel', 'logSerializers'],
    call: async (options) => {
      const app = Fastify()
      try {
        await app.register(tetherFastify, options as never)
      } finally {
        await app.close().catch(() => undefined)
      }
    },
  },
]

/** A value made fresh for each run (signals and scopes are not shared between runs). */
const specialValues: Array<() => unknown> = [
  () => Number.NaN,
  () => -0,
  () => 0,
  () => 1,
  () => 0.5,
  () => -1,
  () => 100,
  () => 500,
  () => 503,
  () => 599,
  () => 600,
  () => 2 ** 31,
  () => 2 ** 53,
  () => 1e21,
  () => Number.MAX_VALUE,
  () => Number.MIN_VALUE,
  () => Number.POSITIVE_INFINITY,
  () => Number.NEGATIVE_INFINITY,
  () => Date.now(),
  () => '100',
  () => '',
  () => ' ',
  () => 'true',
  () => '/',
  () => '/debug',
  () => '/a b',
  () => '/a?b',
  () => '/#',
  () => 'debug',
  () => 'x-budget',
  () => 'X-Budget',
  () => 'grpc-timeout',
  () => 'x budget',
  () => 'x:budget',
  () => '__proto__',
  () => 'constructor',
  () => 'toString',
  () => 'é',
  () => true,
  () => false,
  () => null,
  () => undefined,
  () => 10n,
  () => Symbol('option'),
  () => [],
  () => [100],
  () => ['x-budget', 'grpc-timeout'],
  () => ['x-budget', 'X-Budget'],
  () => ['constructor'],
  () => ['x-budget', 'x-budget'],
  // A hole is not a header name.
  () => {
    const sparse: string[] = []
    sparse[1] = 'x-budget'
    return sparse
  },
  () => ({}),
  () => () => 100,
  () => class {},
  () => new Date(0),
  () => new Number(100),
  () => new String('100'),
  () => Object.create(null),
  () => JSON.parse('{"__proto__":{"timeout":-1,"limit":0,"concurrency":0,"status":1}}'),
  () => ({ __proto__: { timeout: -1, limit: 0, concurrency: 0, status: 1, signal: 5 } }),
  () => ({ constructor: 5, toString: 'x', valueOf: () => 100 }),
  () => ({ valueOf: () => 100 }),
  () => ({ toString: () => '100' }),
  () => AbortSignal.abort(new Error('gone')),
  () => new AbortController().signal,
  () => new AbortController(),
  () => createScope().signal,
  () => ({ aborted: false, addEventListener() {}, removeEventListener() {} }),
  () => ({ aborted: true, reason: 'gone', addEventListener() {}, removeEventListener() {} }),
  () => ({ aborted: false, addEventListener() {} }),
  () => ({ aborted: 'no', addEventListener() {}, removeEventListener() {} }),
  () => ({ warn() {} }),
  () => ({ warn: 'x' }),
  () => Object.assign(() => undefined, { warn() {} }),
  () => new Map(),
  () => new Set([1]),
  () => ({ headersTimeout: 100, requestTimeout: 50 }),
  () => ({ requestTimeout: 0 }),
  () => ({ keepAliveTimeout: 0 }),
  () => ({ headersTimeout: null }),
  () => ({ checkInterval: '1000' }),
  () => 'auto',
  () => 'AUTO',
]

const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.constantFrom(...specialValues).map((make) => make()), weight: 3 },
  {
    arbitrary: fc.anything({
      maxDepth: 2,
      maxKeys: 4,
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withNullPrototype: true,
      withSparseArray: true,
      withTypedArray: true,
      key: fc.oneof(
        fc.string(),
        fc.constantFrom('__proto__', 'constructor', 'toString', 'valueOf', 'timeout', 'signal', 'warn', 'aborted'),
      ),
    }),
    weight: 3,
  },
  { arbitrary: fc.double(), weight: 1 },
  { arbitrary: fc.integer({ min: -10, max: 700 }), weight: 2 },
  { arbitrary: fc.string({ maxLength: 8 }), weight: 1 },
)

interface Expectation {
  readonly valid: boolean
  /** For an invalid call: what the message may name (`name` in backticks, or the phrase) and the classes allowed. */
  readonly names: ReadonlyArray<{ readonly text: string; readonly errors: readonly ErrorClass[] }>
}

/** What calling `target` with `options` must do. */
function expectationFor(target: Target, options: unknown, whole: unknown = options): Expectation {
  if (whole !== undefined && !isOptionsObject(whole)) {
    return { valid: false, names: [{ text: 'options object', errors: [TypeError] }] }
  }
  const values = (whole ?? {}) as Record<string, unknown>
  const names: Array<{ text: string; errors: readonly ErrorClass[] }> = []
  // Every key is an option the API knows: a misspelt one is refused, naming it.
  for (const key in values) {
    if (!Object.hasOwn(target.rules, key) && !target.ignored?.includes(key)) {
      names.push({ text: `\`${key}\``, errors: [TypeError] })
    }
  }
  for (const [name, rule] of Object.entries(target.rules)) {
    const verdict = rule(values[name])
    if (verdict.valid) continue
    for (const text of verdict.names ?? [name]) names.push({ text: `\`${text}\``, errors: verdict.errors })
  }
  return { valid: names.length === 0, names }
}

async function outcomeOf(call: () => unknown): Promise<{ ok: true } | { ok: false; error: unknown }> {
  try {
    await call()
    return { ok: true }
  } catch (error) {
    return { ok: false, error }
  }
}

const describeValue = (value: unknown) => util.inspect(value, { depth: 1, breakLength: Number.POSITIVE_INFINITY })

function expectOutcome(
  expectation: Expectation,
  outcome: { ok: true } | { ok: false; error: unknown },
  context: string,
): void {
  if (expectation.valid) {
    expect(outcome.ok ? 'accepted' : String((outcome as { error: unknown }).error), context).toBe('accepted')
    return
  }
  expect(outcome.ok ? 'accepted' : 'refused', context).toBe('refused')
  if (outcome.ok) return
  const error = outcome.error as Error
  expect(error instanceof TypeError || error instanceof RangeError, `${context}: ${String(error)}`).toBe(true)
  const named = expectation.names.find(({ text }) => String(error.message).includes(text))
  expect(
    named,
    `${context}: "${error.message}" names none of ${expectation.names.map(({ text }) => text)}`,
  ).toBeDefined()
  expect(
    named?.errors.some((errorClass) => error.constructor === errorClass),
    `${context}: ${error.name} for ${named?.text}`,
  ).toBe(true)
}

describe('options: fuzzing every option of every API', () => {
  for (const target of targets) {
    const numRuns = target.name === 'the Fastify plugin' ? 40 : 150

    describe(target.name, () => {
      it.each(Object.keys(target.rules))(
        'accepts a valid `%s` and refuses any other value with a TypeError or RangeError naming it',
        async (name) => {
          await fc.assert(
            fc.asyncProperty(anyValue, async (value) => {
              const options = { ...target.base, [name]: value }
              const expectation = expectationFor(target, options)
              const outcome = await outcomeOf(() => target.call(options))
              expectOutcome(expectation, outcome, `${target.name} with ${name}: ${describeValue(value)}`)
            }),
            // Every special value is tried on every option, besides the random ones.
            { numRuns, examples: specialValues.map((make): [unknown] => [make()]) },
          )
        },
      )

      it('accepts a valid options argument and refuses any other with a TypeError or RangeError naming the problem', async () => {
        const keys = Object.keys(target.rules)
        const someOptions = fc.record(Object.fromEntries(keys.map((key) => [key, anyValue])), { requiredKeys: [] })
        const argument =
          target.name === 'the Fastify plugin'
            ? // Fastify calls a function given as options to produce them: not the plugin's to judge.
              anyValue.filter((value) => typeof value !== 'function')
            : anyValue
        await fc.assert(
          fc.asyncProperty(fc.oneof(argument, someOptions), async (options) => {
            let whole: unknown = options
            if (target.name === 'the Fastify plugin') whole = await optionsFastifyHands(options)
            const expectation = expectationFor(target, options, whole)
            const outcome = await outcomeOf(() => target.call(options))
            expectOutcome(expectation, outcome, `${target.name}(${describeValue(options)})`)
          }),
          {
            numRuns,
            examples: specialValues
              .map((make) => make())
              .filter((value) => target.name !== 'the Fastify plugin' || typeof value !== 'function')
              .map((value): [unknown] => [value]),
          },
        )
      })
    })
  }
})

/** What Fastify hands a plugin registered with `options` (it replaces falsy options with `{}`). */
async function optionsFastifyHands(options: unknown): Promise<unknown> {
  const app = Fastify()
  let seen: unknown
  await app.register(
    fp(async (_instance, given) => {
      seen = given
    }),
    options as never,
  )
  await app.close()
  return seen
}
