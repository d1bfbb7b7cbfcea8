/**
 * Process-wide state shared by every copy of this package. npm nests a second copy of
 * `@tether/core` when an app and an adapter ask for different versions; each copy then has its own
 * module state. What work started through one copy must find from another (the async-context
 * storage, the registry, the per-server connection state) lives on `globalThis` under
 * `Symbol.for`, and the internal protocol between scopes, groups and pools uses `Symbol.for` keys,
 * so a scope made by one copy is a scope to the other.
 *
 * That only holds while both copies speak the same protocol: {@link PROTOCOL} is raised whenever a
 * symbol-keyed member changes meaning. A copy that finds another with a different protocol warns
 * once, loudly, at load time, instead of silently unbinding work from its request.
 *
 * @internal
 */

/** The version of the symbol-keyed protocol between copies. @internal */
export const PROTOCOL = 1

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
    `two copies of @tether/core that cannot share requests are loaded (${copies}): work started through one is not bound to requests of the other. Make your adapters and app depend on one version (npm dedupe).`,
    { type: 'TetherDuplicateWarning', code: 'TETHER_DUPLICATE_CORE' },
  )
}
