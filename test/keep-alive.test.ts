import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { hardenServer, inspect } from '@tether/core'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, eventually, loopbackServers, send } from './support/http.js'

// Keep-alive as a balancer sees it, with Node's own clients on 127.0.0.1. A balancer pools
// connections and reuses one after it has been idle for up to its own idle timeout (60 s for
// nginx and AWS ALB): the server must not close it first.
const { listen, closeAll } = loopbackServers()
afterEach(closeAll)

describe('hardenServer(): keep-alive behind a balancer', () => {
  it('announces a keep-alive timeout longer than a 60 s balancer’s', async () => {
    const url = await listen(hardenServer(http.createServer((_req, res) => res.end('ok'))))
    const agent = new http.Agent({ keepAlive: true })
    try {
      const answered = await send(url, { agent })
      expect(answered.headers['keep-alive']).toBe('timeout=65')
    } finally {
      agent.destroy()
    }
  })

  it('keeps an idle connection open past Node’s 5 s default, so a pooled connection is reused instead of racing a close', async () => {
    const url = await listen(hardenServer(http.createServer((_req, res) => res.end('ok'))))
    const socket = await connect(url)
    let closed = false
    socket.on('close', () => {
      closed = true
    })
    let received = ''
    socket.on('data', (chunk) => {
      received += chunk
    })
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    // Node's default (5 s, plus its one-second buffer) would have closed the socket by now.
    await sleep(6_500)
    expect(closed).toBe(false)
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    const until = Date.now() + 5_000
    while ((received.match(/HTTP\/1.1 200/g) ?? []).length < 2 && Date.now() < until) await sleep(10)
    expect(received.match(/HTTP\/1.1 200/g)).toHaveLength(2)
    socket.destroy()
  }, 15_000)

  it('closes the longest-idle connections past maxIdleConnections, never one with a request in progress', async () => {
    const url = await listen(
      hardenServer(
        http.createServer((req, res) => {
          if (req.url === '/slow') setTimeout(() => res.end('slow'), 1_000)
          else res.end('ok')
        }),
        { maxIdleConnections: 2, checkInterval: 100 },
      ),
    )
    const before = inspect().counters.idleEvicted
    const open = async () => {
      const socket = await connect(url)
      const state = { closed: false, answered: '' }
      socket.on('close', () => {
        state.closed = true
      })
      socket.on('data', (chunk) => {
        state.answered += chunk
      })
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      await eventually(() => state.answered.includes('ok'), 2_000, 'an answer')
      return { socket, state }
    }
    // A busy connection, then three idle ones, then, after they have been seen idle, two more.
    const busy = await connect(url)
    let busyAnswer = ''
    busy.on('data', (chunk) => {
      busyAnswer += chunk
    })
    busy.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n')
    const older = [await open(), await open(), await open()]
    await sleep(300)
    const newer = [await open(), await open()]
    await eventually(() => older.every(({ state }) => state.closed), 3_000, 'the oldest idle connections to close')
    expect(newer.map(({ state }) => state.closed)).toEqual([false, false])
    expect(inspect().counters.idleEvicted - before).toBe(3)
    await eventually(() => busyAnswer.includes('slow'), 3_000, 'the busy connection to be answered')
    for (const { socket } of newer) socket.destroy()
    busy.destroy()
  })
})
