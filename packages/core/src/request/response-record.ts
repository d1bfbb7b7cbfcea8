import { ServerResponse } from 'node:http'
import { Http2ServerResponse } from 'node:http2'
import { type Scope, shared } from '../primitives/index.js'
import type { HttpResponse } from '../server/index.js'
import type { TetheredRequest } from './tethered-request.js'

/**
 * Where a request's record is found from its response: the one lookup every binding, the response's
 * `close` listener and an adapter's `req.scope` make. Shared by every copy of the package: a
 * request reaching bindings of two copies (an app and a sub-app whose adapters resolved different
 * copies, or an app's own `createTether()` beside an adapter) is owned by the first, and the
 * second only tightens its deadline.
 *
 * The record stays findable after the response has closed, so that the request's scope can still
 * be read (aborted) by work that outlived it; it goes with the response.
 */

/** @internal The record's key on a response. */
export const kRecord = Symbol.for('tether.request')

type RecordedResponse = HttpResponse & { [kRecord]?: TetheredRequest }

// Node 22's V8 (12.4) never reuses the hidden class it builds for a property added to an object
// whose prototype was replaced: each such add builds a new one, about 1.5 µs. Express replaces the
// prototype of every req and res (`Object.setPrototypeOf` in `app.handle`), so there the record of
// such a response goes into a WeakMap (about 0.15 µs). Node 24's V8 (13.6) reuses the class, and
// the property costs next to nothing while the WeakMap would cost about 0.12 µs: there every
// record is a property. Every copy of the package in a process runs on the same V8, so all choose
// alike.
const reparentedRecords =
  Number(process.versions.v8.split('.')[0]) < 13
    ? shared('tether.reparentedRecords', () => new WeakMap<HttpResponse, TetheredRequest>())
    : undefined

/**
 * The WeakMap that holds `res`'s record: on Node 22, for a response whose prototype was replaced
 * since Node made it. `undefined` otherwise: the record is a property of the response.
 */
function weakMapFor(res: HttpResponse): WeakMap<HttpResponse, TetheredRequest> | undefined {
  if (reparentedRecords === undefined) return undefined
  const prototype = Object.getPrototypeOf(res)
  if (prototype === ServerResponse.prototype || prototype === Http2ServerResponse.prototype) return undefined
  return reparentedRecords
}

/** @internal The record of the request `res` answers, if a binding attached it. */
export function recordOf(res: HttpResponse): TetheredRequest | undefined {
  const map = weakMapFor(res)
  return map === undefined ? (res as RecordedResponse)[kRecord] : map.get(res)
}

/** @internal Makes `record` the one {@link recordOf} finds for `res`. */
export function keepRecord(res: HttpResponse, record: TetheredRequest): void {
  const map = weakMapFor(res)
  if (map === undefined) (res as RecordedResponse)[kRecord] = record
  else map.set(res, record)
}

/**
 * The scope of the request `res` answers, once a binding has attached it (also after the response
 * has closed); `undefined` otherwise. What an adapter's `req.scope` reads.
 */
export function scopeOfResponse(res: HttpResponse | undefined): Scope | undefined {
  return res === undefined ? undefined : recordOf(res)?.scope
}
