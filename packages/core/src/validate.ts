import { inspect } from 'node:util'

/** Shows a received value the way an error message should: strings quoted, objects shallow. */
export function received(value: unknown): string {
  return inspect(value, { depth: 0, breakLength: Number.POSITIVE_INFINITY })
}

/**
 * An option's value, or its default when it is absent. Only `undefined` means absent: `null` is a
 * value like any other, and is refused by the option's own check rather than silently defaulted.
 */
export function optional<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value
}

/** Throws unless `options` is undefined or a plain object. */
export function checkOptionsObject(where: string, options: unknown): void {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new TypeError(`${where} expects an options object, received ${received(options)}`)
  }
}

/**
 * A duration in milliseconds: a finite number ≥ 0 (or `Infinity` where `allowInfinity`).
 * Never coerced: `"100"` is a TypeError, not 100.
 */
export function checkDuration(name: string, value: unknown, allowInfinity = false): number {
  if (typeof value !== 'number') {
    throw new TypeError(`\`${name}\` must be a number of milliseconds, received ${received(value)}`)
  }
  if (Number.isNaN(value) || value < 0 || (!allowInfinity && !Number.isFinite(value))) {
    const range = allowInfinity ? 'a number ≥ 0 or Infinity' : 'a finite number ≥ 0'
    throw new RangeError(`\`${name}\` must be ${range} (milliseconds), received ${received(value)}`)
  }
  return value
}

/** A timeout in milliseconds: a finite number > 0. Never coerced. */
export function checkTimeout(name: string, value: unknown): number {
  if (typeof value !== 'number') {
    throw new TypeError(`\`${name}\` must be a number of milliseconds, received ${received(value)}`)
  }
  if (!(value > 0 && Number.isFinite(value))) {
    throw new RangeError(`\`${name}\` must be a finite number > 0 (milliseconds), received ${received(value)}`)
  }
  return value
}

/** A positive integer, or `Infinity` where allowed (concurrency, limits, queue sizes). */
export function checkCount(name: string, value: unknown, { min = 1, allowInfinity = true } = {}): number {
  if (typeof value !== 'number') {
    throw new TypeError(`\`${name}\` must be a number, received ${received(value)}`)
  }
  // Safe integers only: beyond them a count is not exact, and `String(1e21)` is not a header value.
  const ok = (Number.isSafeInteger(value) && value >= min) || (allowInfinity && value === Number.POSITIVE_INFINITY)
  if (!ok) {
    const range = allowInfinity ? `an integer ≥ ${min} or Infinity` : `an integer ≥ ${min}`
    throw new RangeError(`\`${name}\` must be ${range}, received ${received(value)}`)
  }
  return value
}

/** An epoch-milliseconds timestamp. */
export function checkTimestamp(name: string, value: unknown): number {
  if (typeof value !== 'number') {
    throw new TypeError(`\`${name}\` must be an epoch timestamp in milliseconds, received ${received(value)}`)
  }
  if (!Number.isFinite(value)) {
    throw new RangeError(`\`${name}\` must be a finite epoch timestamp in milliseconds, received ${received(value)}`)
  }
  return value
}

/** An AbortSignal (duck-typed, so signals from other realms or polyfills are accepted). */
export function checkSignal(name: string, value: unknown): AbortSignal {
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as AbortSignal).aborted !== 'boolean' ||
    typeof (value as AbortSignal).addEventListener !== 'function' ||
    typeof (value as AbortSignal).removeEventListener !== 'function'
  ) {
    throw new TypeError(`\`${name}\` must be an AbortSignal, received ${received(value)}`)
  }
  return value as AbortSignal
}

/** A boolean flag. */
export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') {
    throw new TypeError(`\`${name}\` must be a boolean, received ${received(value)}`)
  }
  return value
}

/** A function. */
export function checkFunction(name: string, value: unknown): void {
  if (typeof value !== 'function') {
    throw new TypeError(`\`${name}\` must be a function, received ${received(value)}`)
  }
}
