// A slow downstream service for the examples: every request takes `delayMs` to answer, and the
// service counts, per caller, the requests it is still working on. A caller that gives up (closes
// the connection) stops the work at once, as a real service would see its client go away.
import http from 'node:http'

/**
 * Starts the downstream service on 127.0.0.1.
 * @param {{ delayMs: number }} options
 */
export async function startDownstream({ delayMs }) {
  const inFlight = new Map()
  const server = http.createServer((req, res) => {
    const caller = req.headers['x-caller'] ?? 'unknown'
    inFlight.set(caller, (inFlight.get(caller) ?? 0) + 1)
    const timer = setTimeout(() => res.end(JSON.stringify({ value: 42 })), delayMs)
    res.on('close', () => {
      clearTimeout(timer)
      inFlight.set(caller, inFlight.get(caller) - 1)
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Requests from `caller` still being worked on. */
    inFlight: (caller) => inFlight.get(caller) ?? 0,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}
