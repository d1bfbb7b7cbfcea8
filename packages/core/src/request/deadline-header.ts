/**
 * The header through which services pass their remaining budget to each other. Budgets are
 * relative (milliseconds left), never absolute times, so no two clocks are ever compared.
 */
export const DEFAULT_DEADLINE_HEADER = 'x-request-timeout-ms'

/** gRPC's own timeout header: up to 8 digits and a unit (H, M, S, m, u, n). */
export const GRPC_TIMEOUT_HEADER = 'grpc-timeout'

/**
 * The budget Envoy gives its upstreams (integer milliseconds): the route's timeout, or the retry
 * policy's per-try timeout, less what has elapsed, so that the upstream can give up first.
 */
export const ENVOY_TIMEOUT_HEADER = 'x-envoy-expected-rq-timeout-ms'

/** The Connect protocol's timeout header: integer milliseconds, at most 10 digits. */
export const CONNECT_TIMEOUT_HEADER = 'connect-timeout-ms'

/**
 * The budget headers a service mesh sends, trusted by default beside tether's own: Envoy's, gRPC's
 * and Connect's. Each can only shorten a request's deadline.
 */
export const MESH_DEADLINE_HEADERS: readonly string[] = Object.freeze([
  ENVOY_TIMEOUT_HEADER,
  GRPC_TIMEOUT_HEADER,
  CONNECT_TIMEOUT_HEADER,
])

// At most 10 ASCII digits (about 115 days); anything longer is not a budget but an attack or a bug.
const MILLISECONDS = /^[0-9]{1,10}$/
const GRPC_TIMEOUT = /^([0-9]{1,8})([HMSmun])$/
const GRPC_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 }

/**
 * Reads a remaining budget, in milliseconds, from a header value. Only a plain integer of ASCII
 * digits is accepted (or, for `grpc-timeout`, gRPC's `<digits><unit>` form); negative, fractional,
 * exponent, signed, padded, non-ASCII, repeated (`"100, 200"`) or over-long values are refused.
 *
 * @param value - the raw header value, as Node gives it
 * @param header - the header's name, which decides the format
 * @returns the budget in whole milliseconds, or `undefined` if the value is malformed
 */
export function parseBudget(
  value: string | string[] | undefined,
  header: string = DEFAULT_DEADLINE_HEADER,
): number | undefined {
  if (typeof value !== 'string') return undefined
  if (header === GRPC_TIMEOUT_HEADER) {
    const match = GRPC_TIMEOUT.exec(value)
    if (match === null) return undefined
    // Sub-millisecond remainders are dropped: a budget only ever shrinks on its way downstream.
    return Math.floor(Number(match[1]) * (GRPC_UNIT_MS[match[2] as string] as number))
  }
  return MILLISECONDS.test(value) ? Number(value) : undefined
}

/**
 * Writes a budget for the named header: integer milliseconds, or for `grpc-timeout` the largest
 * gRPC unit that keeps it within 8 digits.
 *
 * @param ms - the remaining budget in milliseconds (rounded down, never negative)
 */
export function formatBudget(ms: number, header: string = DEFAULT_DEADLINE_HEADER): string {
  const whole = Math.max(0, Math.floor(ms))
  // What parseBudget accepts: at most 10 digits. A longer budget (over 115 days) is clamped.
  if (header !== GRPC_TIMEOUT_HEADER) return String(Math.min(whole, 9_999_999_999))
  if (whole <= 99_999_999) return `${whole}m`
  if (whole / 1_000 <= 99_999_999) return `${Math.floor(whole / 1_000)}S`
  return `${Math.min(99_999_999, Math.floor(whole / 3_600_000))}H`
}
