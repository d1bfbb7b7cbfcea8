import { inspect } from 'node:util'

// The longest a received value is shown in an error message. An Express app or a Fastify instance
// passed where a server belongs has hundreds of properties: printed whole, its error was thousands
// of characters long, and the sentence that says what went wrong was lost above it.
const MAX_RECEIVED = 80

/**
 * Shows a received value the way an error message should: strings quoted, objects shallow, and
 * never more than a short line (a longer rendering is cut, with `…` saying so).
 */
export function received(value: unknown): string {
  const shown = inspect(value, {
    depth: 0,
    breakLength: Number.POSITIVE_INFINITY,
    maxArrayLength: 10,
    maxStringLength: 60,
  })
  return shown.length <= MAX_RECEIVED ? shown : `${shown.slice(0, MAX_RECEIVED - 1)}…`
}

/**
 * The value of an option that has a former name too: `name`'s, else `formerName`'s. Giving both is
 * refused, since one of them would be silently ignored.
 *
 * @internal
 */
export function renamedOption<T>(options: object | undefined, name: string, formerName: string): T | undefined {
  if (options === undefined) return undefined
  const value = (options as Record<string, unknown>)[name]
  const former = (options as Record<string, unknown>)[formerName]
  if (value !== undefined && former !== undefined) {
    throw new TypeError(
      `\`${name}\` and \`${formerName}\` are one option (\`${formerName}\` is its former name): give one`,
    )
  }
  return (value === undefined ? former : value) as T | undefined
}

/**
 * An option's value, or its default when it is absent. Only `undefined` means absent: `null` is a
 * value like any other, and is refused by the option's own check rather than silently defaulted.
 */
export function optional<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value
}

/**
 * Throws unless `options` is undefined or an object whose every key is one of `known`. A misspelt
 * option must not pass silently: `{ timeut: 100 }` would otherwise mean no deadline at all.
 * Inherited enumerable keys count, as they do when options are read.
 */
export function checkOptionsObject(where: string, options: unknown, known: readonly string[]): void {
  if (options === undefined) return
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${where} expects an options object, received ${received(options)}`)
  }
  for (const key in options) {
    if (!known.includes(key)) throw unknownOption(where, key, known)
  }
}

function unknownOption(where: string, key: string, known: readonly string[]): TypeError {
  let nearest: string | undefined
  let best = Math.max(2, Math.floor(key.length / 3)) + 1
  const typed = key.toLowerCase()
  for (const candidate of known) {
    const name = candidate.toLowerCase()
    // A key that a known name starts with (`keepAlive`) is as good as a near miss.
    const distance = typed.length >= 4 && name.startsWith(typed) ? 1 : editDistance(typed, name)
    if (distance < best) {
      best = distance
      nearest = candidate
    }
  }
  const hint =
    nearest === undefined
      ? `known options: ${known.map((name) => `\`${name}\``).join(', ')}`
      : `did you mean \`${nearest}\`?`
  return new TypeError(`${where} has no option \`${key}\` (${hint})`)
}

/** Levenshtein distance, for suggesting the option a misspelt key meant. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost)
    }
    previous = current
  }
  return previous[b.length] ?? 0
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

/**
 * Seconds a shed caller is told to wait (`Retry-After`): an integer ≥ 0, 1 when absent. One rule
 * for every queue that sheds (a pool's, an outbound origin's), so the option means the same
 * everywhere.
 */
export function checkRetryAfter(value: unknown): number {
  return value === undefined ? 1 : checkCount('retryAfter', value, { min: 0, allowInfinity: false })
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

// Header names are HTTP tokens (RFC 9110). Node gives incoming names lowercased, so a name with an
// uppercase letter would never match one; outgoing ones are compared with tether's own names.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

/**
 * A header name: a lowercase HTTP token, and not the name of an Object property (Node's headers
 * object has a prototype, so a name like `constructor` would always seem present).
 *
 * @param orFalse - whether `false` is accepted as well (and returned as is): "no header"
 */
export function checkHeaderName(name: string, value: unknown, orFalse: true): string | false
export function checkHeaderName(name: string, value: unknown, orFalse?: false): string
export function checkHeaderName(name: string, value: unknown, orFalse = false): string | false {
  if (orFalse && value === false) return false
  if (typeof value !== 'string' || !HEADER_NAME.test(value)) {
    const what =
      typeof value === 'string' ? 'a lowercase header name' : orFalse ? 'a header name or false' : 'a header name'
    throw new TypeError(`\`${name}\` must be ${what}, received ${received(value)}`)
  }
  if (value in Object.prototype) {
    throw new TypeError(`\`${name}\` must not be the name of an Object property, received ${received(value)}`)
  }
  return value
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
