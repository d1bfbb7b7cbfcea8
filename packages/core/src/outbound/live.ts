import { shared } from '../primitives/index.js'
import type { OutboundOrigin } from './outbound.js'

// Every live outbound transport, for inspect() and the metrics; shared across copies of the
// package like the registry (the adapter's debug route lists what the app's copy made). Held
// weakly: a scoped fetch dropped without close() is forgotten once its last socket has closed (an
// open socket keeps its transport reachable through undici's pool).
/** @internal */
export const live = shared('tether.outbound', () => new Set<WeakRef<{ origins(): OutboundOrigin[] }>>())

/**
 * Every origin of every live outbound dispatcher, counts summed per origin.
 *
 * @internal
 */
export function outboundOrigins(): OutboundOrigin[] {
  if (live.size === 0) return []
  const byOrigin = new Map<string, { origin: string; open: number; idle: number; busy: number; queued: number }>()
  for (const ref of live) {
    const transport = ref.deref()
    if (transport === undefined) {
      live.delete(ref)
      continue
    }
    for (const entry of transport.origins()) {
      const sum = byOrigin.get(entry.origin)
      if (sum === undefined) byOrigin.set(entry.origin, { ...entry })
      else {
        sum.open += entry.open
        sum.idle += entry.idle
        sum.busy += entry.busy
        sum.queued += entry.queued
      }
    }
  }
  return [...byOrigin.values()]
}
