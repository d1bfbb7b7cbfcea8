import http from 'node:http'
import net from 'node:net'
import { inspect } from '@tether/core'

/** A response as the client saw it. */
export interface ClientResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  /** The request went out on a socket kept alive from an earlier request. */
  reusedSocket: boolean
  /** The body ended abnormally (connection cut mid-response). */
  cut: boolean
}

export interface ClientRequest {
  method?: string
  headers?: Record<string, string>
  body?: string | Buffer
  agent?: http.Agent
}

/** Sends a request with node:http and collects the whole response, noting if it was cut short. */
export function send(url: string, options: ClientRequest = {}): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: options.agent })
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      let cut = false
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('aborted', () => {
        cut = true
      })
      res.on('error', () => {
        cut = true
      })
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
          reusedSocket: req.reusedSocket,
          cut: cut || !res.complete,
        }),
      )
    })
    req.end(options.body)
  })
}

/**
 * Sends a GET to `url` and hangs up (destroys the connection) as soon as `ready()` holds, however
 * long the machine takes to get there; rejects, after hanging up, if it does not hold within 5 s.
 */
export async function hangUpWhen(url: string, ready: () => boolean, what: string): Promise<void> {
  const req = http.request(url)
  req.on('error', () => {})
  req.end()
  try {
    await eventually(ready, 5_000, what)
  } finally {
    req.destroy()
  }
}

/**
 * A condition for {@link hangUpWhen}: a request to the route `pattern` is in flight in tether, so it
 * has reached its route (as tether names it: `/users/:id`).
 */
export function inRoute(pattern: string): () => boolean {
  return () => inspect().inflight.some((request) => request.route === pattern)
}

/** Opens a raw TCP connection to the server of `url`. */
export function connect(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => resolve(socket))
    socket.on('error', reject)
  })
}

/** Resolves when `predicate` holds, polling every 5 ms, or rejects after `ms`. */
export async function eventually(predicate: () => boolean, ms = 2_000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * The servers a test file starts on 127.0.0.1: `listen()` starts one on port 0 (unless it is
 * listening already) and returns its URL; `closeAll()`, for `afterEach`, closes them and their
 * connections.
 */
export function loopbackServers() {
  const servers: http.Server[] = []
  return {
    async listen(server: http.Server): Promise<string> {
      servers.push(server)
      if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
    },
    async closeAll(): Promise<void> {
      for (const server of servers.splice(0)) {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      }
    },
  }
}
