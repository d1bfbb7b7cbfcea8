import {
  type AbortOwner,
  counters,
  type InflightEntry,
  isDeadlineReason,
  isShutdown,
  kAbort,
  kIsAborted,
  kOnAbort,
  kScopeAborted,
  type Logger,
  lazyReason,
  reasonValue,
  removeInflight,
  routineCancel,
  type Scope,
  type TrackingPolicy,
} from '../primitives/index.js'
import {
  type Answer,
  abandon,
  type HttpResponse,
  type HttpServer,
  handlerEnded,
  SHUTTING_DOWN,
  streamOf,
} from '../server/index.js'
import { type RequestEndReason, requestEndChannel } from './request-diagnostics.js'
import { recordOf } from './response-record.js'
import type { Tether } from './tether.js'

// How a request's scope ends, made only when read (see lazyReason) and then cheaply.
const responseFinished = routineCancel('response finished')
const clientClosed = routineCancel('client closed the connection')
// HTTP/2: one request of many on the connection was reset (RST_STREAM); its siblings go on.
const clientReset = routineCancel('client reset the stream')

/** @internal One request in flight: what the registry lists and what reacts when its scope aborts. */
export class TetheredRequest implements InflightEntry, AbortOwner {
  scope!: Scope
  inflightPrev: InflightEntry | undefined = undefined
  inflightNext: InflightEntry | undefined = undefined
  /** The response, until it closes. */
  res: HttpResponse | undefined
  /** The adapter's handle on the request, until the response closes. */
  source: unknown
  #route: string | undefined = undefined
  #logger: Logger | undefined = undefined
  #described = false
  /**
   * How the request ended, when that is decided before its scope aborts (the response closed, or
   * the deadline passed after the handler ended it): abort listeners run first and may end the
   * response, so the response's state at the end event no longer tells.
   */
  #endedAs: RequestEndReason | undefined = undefined

  constructor(
    readonly tether: Tether,
    readonly method: string,
    readonly startedAt: number,
    readonly server: HttpServer | undefined,
    res: HttpResponse,
    source: unknown,
  ) {
    this.res = res
    this.source = source
  }

  get policy(): TrackingPolicy {
    return this.tether.policy
  }

  /** The header calls made for this request send its remaining budget in (see `RequestInfo`). */
  get deadlineHeader(): string | undefined {
    return this.tether.propagateHeader
  }

  /** The status a missed deadline of this request is answered with (see `RequestInfo`). */
  get deadlineStatus(): number {
    return this.tether.status
  }

  /** The headers whose budget this request's binding read. */
  get trustHeaders(): readonly string[] {
    return this.tether.trustHeaders
  }

  route(): string | undefined {
    if (!this.#described && this.source !== undefined) return this.tether.adapter.route?.(this.source)
    return this.#route
  }

  logger(): Logger | undefined {
    if (!this.#described && this.source !== undefined) this.noteLingering()
    return this.#logger
  }

  remaining(): number {
    return this.scope.remaining()
  }

  /** Whether the handler has ended the response (it may still be on its way to the client). */
  ended(): boolean {
    const res = this.res
    return res !== undefined && handlerEnded(res)
  }

  /**
   * What the request's scope ends with when its deadline passes after the handler ended the
   * response: a finished response, not a deadline miss (delivery is the write side's concern).
   */
  finishedReason(scope: Scope): unknown {
    if (scope !== this.scope || !this.ended()) return undefined
    this.#endedAs = 'finished'
    return lazyReason(responseFinished)
  }

  /**
   * tether refused to start the handler (shed under `concurrency`): answer the client with
   * `answerWith`, unless the framework has handed the response to the user, and seal it.
   */
  refuse(answerWith: Answer): void {
    const res = this.res
    if (res === undefined) return
    const { adapter } = this.tether
    if (this.source !== undefined && adapter.owned?.(this.source) === true) return
    abandon(res, answerWith)
    if (this.source !== undefined) adapter.seal?.(this.source)
  }

  /** A task of this request outlived it: keep what a report needs before the request is dropped. */
  noteLingering(): void {
    if (this.#described || this.source === undefined) return
    this.#described = true
    const { adapter, logger } = this.tether
    this.#route = adapter.route?.(this.source)
    this.#logger = logger === false ? undefined : (adapter.logger?.(this.source) ?? logger)
  }

  /** The scope aborted: answer the client if the reason calls for it, then seal the response. */
  [kScopeAborted](reason: unknown): void {
    const res = this.res
    if (res === undefined) return
    if (requestEndChannel.hasSubscribers) this.#publishEnd(reason)
    let answerWith: Answer
    if (isDeadlineReason(reason)) {
      counters.deadlineExceeded++
      answerWith = this.tether.deadlineAnswer
    } else if (isShutdown(reason)) {
      counters.abortedByShutdown++
      answerWith = SHUTTING_DOWN
    } else {
      // The response was answered and is still being delivered when the deadline came: the
      // request is over for its handler, and no longer in flight.
      if (handlerEnded(res)) removeInflight(this)
      return // cancelled: the client is gone or the response is done; nothing to answer
    }
    const { adapter } = this.tether
    if (this.source !== undefined && adapter.owned?.(this.source) === true) return
    abandon(res, answerWith)
    if (this.source !== undefined) this.tether.adapter.seal?.(this.source)
  }

  #publishEnd(reason: unknown): void {
    let ended: RequestEndReason
    if (isDeadlineReason(reason)) ended = 'deadline'
    else if (isShutdown(reason)) ended = 'shutdown'
    else ended = this.#endedAs ?? 'canceled'
    requestEndChannel.publish({
      scope: this.scope,
      method: this.method,
      route: this.route() ?? null,
      reason: ended,
      error: ended === 'finished' ? undefined : reasonValue(reason),
      durationMs: Date.now() - this.startedAt,
    })
  }

  /** The response closed: the request is over, and its scope ends. */
  close(res: HttpResponse): void {
    removeInflight(this)
    const scope = this.scope
    if (!scope[kIsAborted]) {
      // This record owns the scope, and a request that is over has nothing left to answer: the
      // owner is told of this abort only to publish the end event. Not telling it otherwise keeps
      // its code (1 KB of machine code) out of every request's path, which is what costs over
      // sockets (see bench/code-size.mjs).
      if (!requestEndChannel.hasSubscribers) scope[kOnAbort] = undefined
      if (handlerEnded(res)) {
        this.#endedAs = 'finished'
        scope[kAbort](lazyReason(responseFinished))
      } else {
        counters.clientClosed++
        this.#endedAs = 'hang-up'
        scope[kAbort](lazyReason(streamOf(res) === undefined ? clientClosed : clientReset))
      }
    }
    this.res = undefined
    this.source = undefined
  }
}

/** @internal */
export function onResponseClose(this: HttpResponse): void {
  const record = recordOf(this)
  // Closed already: the record stays with its response once closed (see response-record.ts).
  if (record === undefined || record.res === undefined) return
  record.close(this)
}
