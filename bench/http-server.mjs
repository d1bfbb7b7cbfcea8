// The benchmark's server process: the two contenders of one pair in ONE process, each on its own
// port (named on the command line), so that they share the same JIT, heap and machine state while
// nothing else runs beside them. The driver (bench/http.mjs) starts a few in turn per pair, the
// contenders in alternating order (a process favours one of them a little), and brackets each
// load window with 'begin'/'end' messages; the answer is this process's own CPU time over the
// window (user + system, all threads).
import { build, contenders } from './apps.mjs'

const ports = {}
for (const name of process.argv.slice(2)) {
  const make = contenders[name]
  if (make === undefined) throw new Error(`unknown contender: ${name}`)
  const app = await make()
  if (typeof app.listen === 'function' && app.server !== undefined) {
    await app.listen({ port: 0, host: '127.0.0.1' })
    if (name.endsWith('hardenServer()')) build.hardenServer(app.server)
    ports[name] = app.server.address().port
  } else {
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    if (name.endsWith('hardenServer()')) build.hardenServer(server)
    ports[name] = server.address().port
  }
}

let started
process.on('message', (message) => {
  if (message === 'begin') {
    started = process.cpuUsage()
    process.send({ begun: true })
  } else if (message === 'end') {
    const used = process.cpuUsage(started)
    process.send({ cpuMicros: used.user + used.system, heapUsed: process.memoryUsage().heapUsed })
  } else if (message === 'exit') {
    process.exit(0)
  }
})
// Never outlive the driver: if it goes away, so does this server.
process.on('disconnect', () => process.exit(0))
process.send({ ready: true, ports, node: process.version })
