// Checks what would be published: publint (package.json and files) and arethetypeswrong (types
// resolve for require and import, under node10, node16 and bundlers). Run after `pnpm build`,
// through pnpm (publint packs with `pnpm pack`).
import { execFileSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
let failed = false
for (const name of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', name)
  for (const [tool, args] of [
    ['publint', ['--strict', dir]],
    ['attw', ['--pack', dir]],
  ]) {
    try {
      execFileSync(join(root, 'node_modules', '.bin', tool), args, { stdio: 'pipe', encoding: 'utf8' })
      console.log(`ok  ${tool} ${name}`)
    } catch (error) {
      failed = true
      console.error(`FAIL ${tool} ${name}\n${error.stdout ?? ''}${error.stderr ?? ''}`)
    }
  }
}
process.exit(failed ? 1 : 0)
