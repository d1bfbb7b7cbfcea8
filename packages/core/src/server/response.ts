import { type ServerResponse, STATUS_CODES } from 'node:http'
import { counters } from '../primitives/index.js'
import { cutResponse, type HttpResponse, sendAnswer } from './protocol.js'

/** What tether answers a request it gives up on with. @internal */
export interface Answer {
  readonly statusCode: number
  readonly code: string
  readonly message: string
  /**
   * Close the connection after the answer (HTTP/1.1; it is closed anyway while a body is still
   * arriving). HTTP/2 answers leave the session to shutdown's GOAWAY.
   */
  readonly close: boolean
  /**
   * Seconds sent as `Retry-After`: set on answers that mean "try again, or elsewhere" (shutdown),
   * never on a deadline's, which means this request's budget is spent.
   */
  readonly retryAfter?: number
}

/** The answer during and at the end of a shutdown. @internal */
export const SHUTTING_DOWN: Answer = Object.freeze({
  statusCode: 503,
  code: 'TETHER_SHUTDOWN',
  message: 'server is shutting down',
  close: true,
  retryAfter: 1,
})

/**
 * Answers a request tether gave up on (deadline passed, server shutting down) with a short JSON
 * body of the shape Fastify's default error handler uses, so clients of either framework see one
 * format. Headers the handler had set but not sent are dropped first: a stale `content-length` or
 * `content-type` must not describe tether's body.
 *
 * @internal
 */
export function answer(res: HttpResponse, { statusCode, code, message, close, retryAfter }: Answer): void {
  for (const name of res.getHeaderNames()) res.removeHeader(name)
  const body = answerBody({ statusCode, code, message })
  const headers: Record<string, string | number> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  }
  if (retryAfter !== undefined) headers['retry-after'] = retryAfter
  // A body still arriving (a slow upload) must stop: how to say so differs by protocol.
  sendAnswer(res, statusCode, headers, body, close)
}

/**
 * The body of an answer tether makes itself: the shape of Fastify's default error body, the one
 * JSON both protocols send.
 *
 * @internal
 */
export function answerBody({ statusCode, code, message }: Pick<Answer, 'statusCode' | 'code' | 'message'>): string {
  return JSON.stringify({ statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message })
}

/**
 * Gives up on a response: answers it if nothing has been sent, cuts it if a part has, and seals
 * it either way. A response already finished (an abort listener answered its own way) stands.
 *
 * @internal
 */
export function abandon(res: HttpResponse, answerWith: Answer): void {
  if (!res.writableEnded) {
    if (res.headersSent) cutResponse(res)
    else answer(res, answerWith)
  }
  seal(res)
}

// Shared: a shutdown run from the app's copy must see the responses the adapter's copy sealed, or
// it would answer them again (into the counted no-ops, as late writes).
const kSealed = Symbol.for('tether.sealed')

function countWrite(this: ServerResponse, ...args: unknown[]): ServerResponse {
  counters.lateWrites++
  const callback = args.find((arg) => typeof arg === 'function') as (() => void) | undefined
  // Callers awaiting a write or end callback must not hang forever on a sealed response.
  if (callback !== undefined) process.nextTick(callback)
  return this
}

function countWriteChunk(this: ServerResponse, ...args: unknown[]): boolean {
  countWrite.apply(this, args)
  return true
}

/**
 * Turns methods of a framework object into counted no-ops, as {@link seal} does for Node's own
 * (each call adds one to the `lateWrites` counter and returns the object): for an adapter's `seal`
 * hook, such as Fastify's `reply.send` once tether has answered the request.
 *
 * @param target - the framework object (Fastify's reply)
 * @param methods - the names of the methods to neutralise
 * @example
 * ```ts
 * swallowLateWrites(reply, 'send')
 * ```
 */
export function swallowLateWrites(target: object, ...methods: string[]): void {
  for (const method of methods) (target as Record<string, unknown>)[method] = countWrite
}

function ignore(this: ServerResponse): ServerResponse {
  return this
}

// The header and informational methods a sealed response ignores (writes and ends are counted).
const IGNORED_ONCE_SEALED = [
  'writeHead',
  'setHeader',
  'setHeaders',
  'appendHeader',
  'removeHeader',
  'flushHeaders',
  'addTrailers',
  'writeContinue',
  'writeProcessing',
  'writeEarlyHints',
] as const

function notSent(): boolean {
  return false
}

/**
 * Makes a response that tether has answered or cut harmless to write to: every write, end and
 * header call becomes a counted no-op, so a handler that carries on after the deadline cannot
 * throw `ERR_HTTP_HEADERS_SENT`, crash the process, or reach the client.
 *
 * The response also stops reporting `headersSent`. Code that checks it before writing (Express's
 * final error handler among it) then writes into the void instead of taking its other branch,
 * which for finalhandler is destroying the socket, and with it the answer tether just sent.
 *
 * @internal
 */
export function seal(res: HttpResponse): void {
  const target = res as HttpResponse & { [kSealed]?: true }
  if (target[kSealed]) return
  target[kSealed] = true
  const methods = target as unknown as Record<string, unknown>
  methods.write = countWriteChunk
  methods.end = countWrite
  for (const name of IGNORED_ONCE_SEALED) methods[name] = ignore
  Object.defineProperty(target, 'headersSent', { configurable: true, get: notSent })
}

/** Whether {@link seal} has been applied. @internal */
export function isSealed(res: HttpResponse): boolean {
  return (res as HttpResponse & { [kSealed]?: true })[kSealed] === true
}
