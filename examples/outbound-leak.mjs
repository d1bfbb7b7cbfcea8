// Go's forgotten `resp.Body.Close()`, replayed in Node: a handler calls a downstream and never
// reads the response body. Each call's socket stays pinned by the unread body, so every request
// leaves one more socket open, until the garbage collector happens to find the Response.
//
// The same Express app is run twice against its own downstream: once calling out with Node's
// global fetch, once with tether's scopedFetch. After each request the script counts the sockets
// still open to the downstream (on the downstream's side, where they cannot hide) and what
// inspect().outbound reports. Loopback only; exits by itself in a few seconds.
//
//   pnpm demo:outbound        (builds the packages, then runs this file)
import http from 'node:http'
import { createScopedFetch, inspect } from '@tether/core'
import { tether } from '@tether/express'
import express from 'express'

const CALLS = 10
// More than the socket buffers hold: a response this size cannot finish until someone reads it.
const BODY = Buffer.alloc(4 * 1024 * 1024, 'x')

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${server.address().port}`
}

async function close(server) {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
}

/** A downstream that sends a large body, and counts the sockets open to it. */
async function startDownstream() {
  const sockets = new Set()
  const server = http.createServer((_req, res) => res.end(BODY))
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return { url: await listen(server), open: () => sockets.size, close: () => close(server) }
}

function get(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode))
      })
      .on('error', reject)
  })
}

const activeSockets = () => process.getActiveResourcesInfo().filter((type) => type === 'TCPSocketWrap').length

async function run(label, makeCall) {
  const downstream = await startDownstream()
  const call = makeCall()
  const app = express()
  app.use(tether({ logger: false }))
  app.get('/profile', async (_req, res) => {
    const response = await call(`${downstream.url}/avatar`)
    res.json({ status: response.status }) // the body is never read
  })
  const server = http.createServer(app)
  const url = await listen(server)

  const before = activeSockets()
  console.log(`\n${label}`)
  console.log('  call  open to downstream  TCP sockets added in process  inspect().outbound')
  for (let i = 1; i <= CALLS; i++) {
    await get(`${url}/profile`)
    // A moment for the released sockets' close to be seen on both ends.
    await new Promise((resolve) => setTimeout(resolve, 50))
    const entry = inspect().outbound.find((o) => o.origin === downstream.url)
    const shown =
      label.startsWith('scopedFetch') || entry
        ? `open ${entry?.open ?? 0}, idle ${entry?.idle ?? 0}, busy ${entry?.busy ?? 0}, queued ${entry?.queued ?? 0}`
        : "(not tether's pool)"
    const added = activeSockets() - before
    console.log(
      `  ${String(i).padStart(4)}  ${String(downstream.open()).padStart(18)}  ${String(added).padStart(28)}  ${shown}`,
    )
  }
  const left = downstream.open()
  await call.close?.()
  await close(server)
  await downstream.close()
  return left
}

// scopedFetch first: the global fetch's pinned sockets would otherwise still be open during its run.
const tethered = await run('scopedFetch (the body is never read)', () => createScopedFetch({ connections: 8 }))
const naive = await run("Node's global fetch (the body is never read)", () => globalThis.fetch)

console.log(
  `\nsockets still open to the downstream after ${CALLS} calls: global fetch ${naive}, scopedFetch ${tethered}`,
)
console.log('scopedFetch cancels an unread body when the request ends, so its socket is released;')
console.log('with the global fetch each unread body pins a socket until the garbage collector finds it.')
