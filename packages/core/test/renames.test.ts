import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createScope, createScopedFetch, TaskGroup } from '../src/index.js'

// CHANGELOG.md, "Renamed": each new name stands beside the old one, which keeps working; both at once is refused.
describe('renamed options', () => {
  it('TaskGroup takes `concurrency`, and still `limit`', async () => {
    for (const options of [{ concurrency: 2 }, { limit: 2 }]) {
      const group = new TaskGroup(options)
      let running = 0
      let most = 0
      for (let i = 0; i < 6; i++) {
        group.go(async () => {
          running++
          most = Math.max(most, running)
          await new Promise((resolve) => setTimeout(resolve, 5))
          running--
        })
      }
      await group.wait()
      expect(group.limit).toBe(2)
      expect(most).toBe(2)
    }
  })

  it('refuses the new and the old name together, and names the one it checks', () => {
    expect(() => new TaskGroup({ concurrency: 2, limit: 3 })).toThrow(
      /`concurrency` and `limit` are one option \(`limit` is its former name\)/,
    )
    expect(() => new TaskGroup({ concurrency: 0 })).toThrow(/`concurrency`/)
    expect(() => new TaskGroup({ limit: 0 })).toThrow(/`limit`/)
    expect(() => createScopedFetch({ concurrency: 2, connections: 2 })).toThrow(/`concurrency` and `connections`/)
    expect(() => createScopedFetch({ idleTimeout: 1_000, keepAliveTimeout: 1_000 })).toThrow(
      /`idleTimeout` and `keepAliveTimeout`/,
    )
    expect(() => createScopedFetch({ propagateHeader: 'x-a', header: 'x-b' })).toThrow(/`propagateHeader` and `header`/)
    expect(() => createScopedFetch({ idleTimeout: -1 })).toThrow(/`idleTimeout`/)
    expect(() => createScopedFetch({ concurrency: 0 })).toThrow(/`concurrency`/)
  })

  describe('createScopedFetch', () => {
    let server: http.Server | undefined
    afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())))

    it('sends the budget in `propagateHeader`, as it did in `header`', async () => {
      const seen: Array<string | undefined> = []
      server = http.createServer((req, res) => {
        seen.push(req.headers['x-budget'] as string | undefined)
        res.end('ok')
      })
      await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve))
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
      for (const options of [
        { propagateHeader: 'x-budget', concurrency: 2, idleTimeout: 1_000 },
        { header: 'x-budget', connections: 2, keepAliveTimeout: 1_000 },
      ]) {
        const fetchScoped = createScopedFetch(options)
        const scope = createScope({ timeout: 5_000 })
        const response = await scope.run(() => fetchScoped(url))
        expect(await response.text()).toBe('ok')
        scope.cancel()
        await fetchScoped.close()
      }
      expect(seen).toHaveLength(2)
      for (const value of seen) expect(Number(value)).toBeGreaterThan(0)
    })
  })
})
