import { describe, expect, it } from 'vitest'
import {
  CONNECT_TIMEOUT_HEADER,
  DEFAULT_DEADLINE_HEADER,
  ENVOY_TIMEOUT_HEADER,
  formatBudget,
  GRPC_TIMEOUT_HEADER,
  MESH_DEADLINE_HEADERS,
  parseBudget,
} from '../src/index.js'

describe('parseBudget (integer milliseconds)', () => {
  it.each([
    ['0', 0],
    ['1', 1],
    ['250', 250],
    ['0012', 12],
    ['9999999999', 9_999_999_999],
  ])('reads %j as %d', (value, expected) => {
    expect(parseBudget(value)).toBe(expected)
    expect(parseBudget(value, DEFAULT_DEADLINE_HEADER)).toBe(expected)
  })

  it.each([
    ['empty', ''],
    ['negative', '-5'],
    ['signed', '+5'],
    ['fractional', '1.5'],
    ['exponent', '1e3'],
    ['hexadecimal', '0x10'],
    ['padded', ' 100'],
    ['with a unit', '100ms'],
    ['fullwidth digits', '１００'],
    ['Arabic-Indic digits', '١٠٠'],
    ['repeated (joined by Node)', '100, 200'],
    ['11 digits', '12345678901'],
    ['Infinity', 'Infinity'],
    ['NaN', 'NaN'],
  ])('refuses a %s value', (_what, value) => {
    expect(parseBudget(value)).toBeUndefined()
  })

  it('refuses what is not a string (absent, or an array of values)', () => {
    expect(parseBudget(undefined)).toBeUndefined()
    expect(parseBudget(['100', '200'])).toBeUndefined()
  })
})

describe('parseBudget (grpc-timeout)', () => {
  it.each([
    ['1H', 3_600_000],
    ['2M', 120_000],
    ['3S', 3_000],
    ['250m', 250],
    ['1500u', 1],
    ['999u', 0],
    ['2000000n', 2],
    ['99999999m', 99_999_999],
  ])('reads %j as %d ms', (value, expected) => {
    expect(parseBudget(value, GRPC_TIMEOUT_HEADER)).toBe(expected)
  })

  it.each(['', '100', '1s', '1h', '123456789m', '-1S', '1.5S', ' 1S'])('refuses %j', (value) => {
    expect(parseBudget(value, GRPC_TIMEOUT_HEADER)).toBeUndefined()
  })
})

describe('parseBudget (the mesh headers)', () => {
  it('reads Envoy’s and Connect’s budgets as integer milliseconds, and refuses anything else', () => {
    for (const header of [ENVOY_TIMEOUT_HEADER, CONNECT_TIMEOUT_HEADER]) {
      expect(parseBudget('15000', header)).toBe(15_000)
      expect(parseBudget('0', header)).toBe(0)
      for (const value of ['', '1.5', '-1', '15s', '1e3', '12345678901', '100, 200']) {
        expect(parseBudget(value, header), `${header}: ${value}`).toBeUndefined()
      }
    }
  })

  it('lists Envoy’s, gRPC’s and Connect’s headers as the mesh’s, frozen', () => {
    expect(MESH_DEADLINE_HEADERS).toEqual(['x-envoy-expected-rq-timeout-ms', 'grpc-timeout', 'connect-timeout-ms'])
    expect(Object.isFrozen(MESH_DEADLINE_HEADERS)).toBe(true)
  })
})

describe('formatBudget', () => {
  it('writes whole milliseconds, rounded down, never negative, and never more digits than it reads', () => {
    expect(formatBudget(1234.9)).toBe('1234')
    expect(formatBudget(-5)).toBe('0')
    expect(formatBudget(1e10)).toBe('9999999999')
    expect(parseBudget(formatBudget(1e15))).toBe(9_999_999_999)
  })

  it('writes grpc-timeout with the largest unit that fits 8 digits, and reads back what it wrote', () => {
    expect(formatBudget(250, GRPC_TIMEOUT_HEADER)).toBe('250m')
    expect(formatBudget(100_000_000, GRPC_TIMEOUT_HEADER)).toBe('100000S')
    expect(formatBudget(1e15, GRPC_TIMEOUT_HEADER)).toBe('99999999H')
    // What is lost is less than the unit used, and always on the short side.
    const unit = (ms: number) => (ms <= 99_999_999 ? 1 : ms / 1_000 <= 99_999_999 ? 1_000 : 3_600_000)
    for (const ms of [0, 1, 999, 60_000, 99_999_999, 100_000_000, 5e11]) {
      const read = parseBudget(formatBudget(ms, GRPC_TIMEOUT_HEADER), GRPC_TIMEOUT_HEADER) as number
      expect(read).toBeLessThanOrEqual(ms)
      expect(ms - read).toBeLessThan(unit(ms))
    }
  })
})
