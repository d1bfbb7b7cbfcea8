// A small HTTP/2 load generator, for machines without h2load (nghttp2-client): `sessions`
// connections, each keeping `streams` requests in flight, for `seconds`. Prints one JSON line:
// { requests, rate, errors }.
//
//   node bench/h2-load.mjs <url> [--sessions 4] [--streams 16] [--seconds 2]
import http2 from 'node:http2'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sessions: { type: 'string', default: '4' },
    streams: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '2' },
  },
})
const url = new URL(positionals[0])
const until = Date.now() + Number(values.seconds) * 1000
let requests = 0
let errors = 0

function loop(session) {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': url.pathname + url.search })
    stream.on('data', () => undefined)
    stream.on('error', () => {
      errors++
    })
    stream.on('close', () => {
      if (stream.rstCode === 0) requests++
      resolve()
    })
  }).then(() => (Date.now() < until ? loop(session) : undefined))
}

const started = Date.now()
const sessions = Array.from({ length: Number(values.sessions) }, () => http2.connect(url.origin))
await Promise.all(sessions.flatMap((session) => Array.from({ length: Number(values.streams) }, () => loop(session))))
const elapsed = (Date.now() - started) / 1000
for (const session of sessions) session.close()
console.log(JSON.stringify({ requests, rate: requests / elapsed, errors }))
