/**
 * Process-wide state shared by every copy of this package. The adapters take `@tether/core` as a
 * peer dependency, so npm and pnpm install one copy; a second one still appears where the peer is
 * not resolved to the app's (`--legacy-peer-deps`, `--force`, conflicting version ranges, a bundle
 * with its own copy, `npm link`), and each copy then has its own module state.
 *
 * What work started through one copy must find from another lives on `globalThis` under
 * `Symbol.for`, made by {@link shared}: the async-context storage, the registry, the servers'
 * connection state, the live outbound transports, worker pools and concurrency limits. Objects that
 * cross between copies (a scope, its subscribers and abort reasons; a request's record, slot and
 * sealed response; a server's checker, its sockets and HTTP/2 sessions) carry `Symbol.for` keys
 * for the members the other copy reads, or plain fields read by shape (a tracked task, a server's
 * state, a request's record). Keys no other copy reads are plain `Symbol`s or `#private` fields.
 * CONTRIBUTING.md ("Two copies of @tether/core") lists each shared key with the crossing it serves.
 *
 * That only holds while both copies speak the same protocol: {@link PROTOCOL} is raised whenever
 * a shared key or a field read by shape is added, removed or changes meaning. A copy that finds
 * another with a different protocol warns once, loudly, at load time, instead of silently
 * unbinding work from its request.
 *
 * @internal
 */

/**
 * The version of the protocol between copies. 2: the HTTP/2 session fields joined it (a session
 * tracked by one copy is checked and shut down by another); the timer-list links left it (no other
 * copy ever read them). 3: a request's record stays with its response once closed (it was removed),
 * and on Node 22 a response whose prototype was replaced keeps it in a shared WeakMap
 * (request/response-record.ts).
 *
 * @internal
 */
export const PROTOCOL = 3

/** The shared value under `Symbol.for(key)`, made by the first copy that asks. @internal */
export function shared<T>(key: string, make: () => T): T {
  const globals = globalThis as Record<symbol, unknown>
  const symbol = Symbol.for(key)
  if (!(symbol in globals)) globals[symbol] = make()
  return globals[symbol] as T
}

const loaded = shared('tether.protocols', () => new Map<number, string>())
const here = typeof __filename === 'string' ? __filename : 'unknown location'
if (!loaded.has(PROTOCOL)) loaded.set(PROTOCOL, here)
if (loaded.size > 1) {
  const copies = [...loaded].map(([protocol, where]) => `protocol ${protocol} at ${where}`).join('; ')
  process.emitWarning(
    `two copies of @tether/core that cannot share requests are loaded (${copies}): work started through one may not be bound to requests of the other, nor a server one tracks fully seen by the other. Install one version beside the adapters (npm ls @tether/core, npm dedupe).`,
    { type: 'TetherDuplicateWarning', code: 'TETHER_DUPLICATE_CORE' },
  )
}
