import type { Dispatcher } from 'undici'
import { live } from './live.js'
import {
  type Handler,
  type Opts,
  type OutboundDispatcher,
  type OutboundOrigin,
  OutboundPool,
  type ResolvedOptions,
} from './outbound.js'

type Undici = typeof import('undici')
let undici: Undici | undefined

/**
 * undici, loaded on first use: it takes tens of milliseconds to load, which an app that never
 * calls out should not pay at startup.
 *
 * @internal
 */
export function loadUndici(): Undici {
  undici ??= require('undici') as Undici
  return undici
}

let DispatcherClass: (new (transport: OutboundPool) => OutboundDispatcher) | undefined

function dispatcherClass(): new (transport: OutboundPool) => OutboundDispatcher {
  if (DispatcherClass !== undefined) return DispatcherClass
  // A real undici Dispatcher, so undici's request()/stream() accept it as well as its fetch().
  class TetherDispatcher extends loadUndici().Dispatcher {
    readonly #transport: OutboundPool

    constructor(transport: OutboundPool) {
      super()
      this.#transport = transport
    }

    override dispatch(opts: Opts, handler: Dispatcher.DispatchHandler): boolean {
      return this.#transport.dispatch(opts, handler as Handler)
    }

    // biome-ignore lint/suspicious/noExplicitAny: undici's close/destroy are overloaded (callback or promise)
    override close(callback?: any): any {
      this.#transport.refuseQueued(new Error('outbound dispatcher closed'))
      return this.#transport.agent.close(callback)
    }

    // biome-ignore lint/suspicious/noExplicitAny: as above
    override destroy(error?: any, callback?: any): any {
      this.#transport.refuseQueued(error instanceof Error ? error : new Error('outbound dispatcher destroyed'))
      return this.#transport.agent.destroy(error, callback)
    }

    origins(): OutboundOrigin[] {
      return this.#transport.origins()
    }
  }
  DispatcherClass = TetherDispatcher as unknown as new (transport: OutboundPool) => OutboundDispatcher
  return DispatcherClass
}

/**
 * Creates the outbound dispatcher behind a scoped fetch: undici's `Agent` with a cap on sockets
 * per origin, an idle timeout, and a bounded, abortable wait queue in front of each origin.
 *
 * @internal
 */
export function createOutbound(options: ResolvedOptions): OutboundDispatcher {
  const { Agent } = loadUndici()
  const agent = new Agent({
    connections: options.connections,
    keepAliveTimeout: options.keepAliveTimeout,
    // undici honours a server's `Keep-Alive: timeout=` hint up to this; never beyond ours.
    keepAliveMaxTimeout: options.keepAliveTimeout,
    headersTimeout: options.headersTimeout,
    bodyTimeout: options.bodyTimeout,
    // One call per socket at a time: `busy` then means what it says, and a slow response never
    // holds up the one queued behind it on the same socket.
    pipelining: 1,
  })
  const transport = new OutboundPool(agent, options)
  transport.ref = new WeakRef(transport)
  live.add(transport.ref)
  return new (dispatcherClass())(transport)
}
