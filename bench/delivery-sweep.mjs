// What the write side of hardenServer() costs while nothing is slow: it adds nothing per request,
// and once per checkInterval it looks at every connection of the server. This opens N idle
// keep-alive connections on 127.0.0.1 (each has been answered once) and times that check.
//
//   pnpm build && node bench/delivery-sweep.mjs [N=2000]
//
// N is bounded by the process's file-descriptor limit (ulimit -n), twice over: both ends are here.
import http from 'node:http'
import net from 'node:net'
import { hardenServer } from '@tether/core'

const N = Number(process.argv[2] ?? 2000)
const server = hardenServer(http.createServer((_req, res) => res.end('ok')))
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const { port } = server.address()
const clients = []
for (let i = 0; i < N; i++) {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  socket.on('data', () => undefined)
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  clients.push(socket)
}
await new Promise((resolve) => setTimeout(resolve, 500))
// The check itself, called directly: the write side's check in the server's one checker (the
// interval hardenServer() armed runs it, with the idle bound's), under their cross-copy keys.
const check = server[Symbol.for('tether.checker')].checks.get(Symbol.for('tether.deliveryWatcher'))
const times = []
for (let round = 0; round < 51; round++) {
  const started = process.hrtime.bigint()
  check()
  times.push(Number(process.hrtime.bigint() - started) / 1000)
}
times.sort((a, b) => a - b)
console.log(`${N} idle keep-alive connections: one check takes ${times[25].toFixed(0)} µs (median of 51)`)
for (const socket of clients) socket.destroy()
server.close()
