import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import {
  constants,
  type Http2SecureServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Stream,
} from 'node:http2'
import { Server as NetServer } from 'node:net'
import { received } from '../primitives/index.js'

/**
 * What differs between HTTP/1.1 and HTTP/2, in one place: the rest of the core (shutdown,
 * hardening, answers and cuts) asks this module instead of branching on the protocol itself.
 *
 * HTTP/1.1: the unit of work is a request on a socket, and a socket carries one at a time.
 * HTTP/2: one session (one socket) multiplexes many streams, each a request. A client hanging up
 * on one request is a stream reset; a server ending a connection politely is a GOAWAY frame
 * (no new streams, open ones finish); ending one request in error is `RST_STREAM` with an error
 * code. Node's `http2Server.close()` stops new connections only, never closes a session
 * (nodejs/node#34265), and an `Http2Server` has no `closeAllConnections()`.
 */

/** A server tether works with: `node:http`, `node:https`, or `node:http2` (cleartext or secure). */
export type HttpServer = Server | Http2Server | Http2SecureServer
/** An incoming request of either protocol (`node:http2`'s compatibility API for HTTP/2). */
export type HttpRequest = IncomingMessage | Http2ServerRequest
/** A response of either protocol (`node:http2`'s compatibility API for HTTP/2). */
export type HttpResponse = ServerResponse | Http2ServerResponse

const { NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR } = constants

/** The HTTP/2 stream under a response, or `undefined` for HTTP/1.1. One property read. @internal */
export function streamOf(res: HttpResponse): ServerHttp2Stream | undefined {
  return (res as Http2ServerResponse).stream
}

/** Whether a server speaks HTTP/2 (it may also speak HTTP/1.1 with `allowHTTP1`). @internal */
export function isHttp2Server(server: HttpServer): server is Http2Server | Http2SecureServer {
  return typeof (server as Http2Server).updateSettings === 'function'
}

/**
 * Ends a response whose headers are already out in a way the client sees as a failure. HTTP/1.1:
 * the connection is destroyed, so the body ends short or without its last chunk. HTTP/2: the
 * stream is reset with `INTERNAL_ERROR`. Destroying an HTTP/2 response would reset it with
 * `NO_ERROR`, which clients (curl, Node's client) report as a complete response; `INTERNAL_ERROR`
 * says the server could not finish it, and leaves sibling streams of the session alone.
 *
 * @internal
 */
export function cutResponse(res: HttpResponse): void {
  const stream = streamOf(res)
  if (stream === undefined) res.destroy()
  else if (!stream.closed) stream.close(NGHTTP2_INTERNAL_ERROR)
}

/**
 * Sends a short answer tether made itself. `close` asks for the connection to be closed after it
 * (shutdown). HTTP/1.1 says it with `Connection: close`, also when the request body is still
 * arriving, since the socket could not serve another request before reading it to its end.
 * HTTP/2 has no connection header (Node drops it with an `UnsupportedWarning`): the session is
 * closed with GOAWAY by shutdown itself, and a body still arriving is stopped by resetting the
 * stream with `NO_ERROR` once the answer is out, which RFC 9113 §8.1 defines for exactly this
 * ("a server MAY request that the client abort transmission of a request without error").
 *
 * @internal
 */
export function sendAnswer(
  res: HttpResponse,
  statusCode: number,
  headers: Record<string, string | number>,
  body: string,
  close: boolean,
): void {
  const stream = streamOf(res)
  if (stream === undefined) {
    const response = res as ServerResponse & { req?: IncomingMessage }
    if (close || response.req?.complete === false) headers.connection = 'close'
    response.writeHead(statusCode, headers)
    response.end(body)
    return
  }
  ;(res as Http2ServerResponse).writeHead(statusCode, headers)
  ;(res as Http2ServerResponse).end(body)
  // A GET's empty body is complete as soon as its headers are (END_STREAM on HEADERS); Node's
  // `req.complete` stays false until someone reads it, so it cannot tell.
  if (!stream.endAfterHeaders && !stream.readableEnded && !stream.closed) stream.close(NGHTTP2_NO_ERROR)
}

/**
 * A Node server (`node:http`, `node:https`, `node:http2`: all are `net.Server`s). The usual mistake
 * is passing the framework's app instead of its server, which has some of a server's methods and
 * would otherwise fail later with `server.on is not a function`, or not at all.
 */
export function checkServer(where: string, value: unknown): void {
  if (value instanceof NetServer) return
  const app = value as { listen?: unknown; server?: unknown } | null | undefined
  let hint = 'a Node server (http, https or http2)'
  if (typeof value === 'function' && typeof app?.listen === 'function') {
    hint = 'the server that app.listen() returns, not the Express app'
  } else if (typeof value === 'object' && app?.server instanceof NetServer) {
    hint = 'app.server, not the Fastify instance'
  }
  throw new TypeError(`${where} expects ${hint}, received ${received(value)}`)
}
