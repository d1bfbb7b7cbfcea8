// A node:test reporter (Fastify's suite runs on node:test through borp) that writes one line of
// JSON per test: { file, title, status, message }. Titles join the names of enclosing tests with
// " > ". node:test reports a test's result after its subtests' results, so the results seen at
// nesting n + 1 since the last result at nesting n are that test's subtests.
import { relative, resolve } from 'node:path'

function message(error) {
  const cause = error?.cause ?? error
  if (cause === undefined || cause === null) return ''
  const text = cause.message ?? String(cause)
  return String(text).split('\n').slice(0, 6).join('\n')
}

export default async function* reporter(source) {
  const levels = new Map() // file -> array of arrays of finished nodes, by nesting
  const flush = (file, node, prefix) => {
    const title = prefix ? `${prefix} > ${node.name}` : node.name
    const lines = []
    if (node.children.length === 0) {
      lines.push({ file, title, status: node.status, message: node.message, wholeFile: node.wholeFile })
    } else {
      for (const child of node.children) lines.push(...flush(file, child, title))
      // A parent failing for its own reason (a hook, a crash), not only because a subtest failed.
      if (node.status === 'fail' && node.failureType !== 'subtestsFailed') {
        lines.push({ file, title, status: 'fail', message: node.message })
      }
    }
    return lines
  }
  const notes = new Map() // file -> the tail of what its process wrote to stderr, and its error diagnostics
  const results = []
  let lastFile = '(unknown)'
  for await (const event of source) {
    const data = event.data
    const file = data?.file ? relative(process.cwd(), data.file) : lastFile
    // node:test reports an error raised after a test ended (an unhandled rejection from an `after`
    // hook) as a diagnostic without a file, next to the events of the file it came from (borp runs
    // one file at a time unless told otherwise).
    const note =
      event.type === 'test:stderr'
        ? data.message
        : event.type === 'test:diagnostic' && /Error/.test(data.message)
          ? `${data.message}\n`
          : undefined
    if (note !== undefined) {
      notes.set(file, `${notes.get(file) ?? ''}${note}`.slice(-1500))
      continue
    }
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue
    lastFile = file
    let byLevel = levels.get(file)
    if (byLevel === undefined) {
      byLevel = []
      levels.set(file, byLevel)
    }
    const children = byLevel[data.nesting + 1] ?? []
    byLevel[data.nesting + 1] = []
    const skipped = data.skip !== undefined || data.todo !== undefined
    // A test file whose process failed outside any test (an uncaught error, a non-zero exit) is
    // reported as a test named after the file; what the process said is added at the end.
    const wholeFile = data.file !== undefined && resolve(data.name) === data.file
    const node = {
      name: wholeFile ? '(the test file itself)' : data.name,
      status: event.type === 'test:fail' ? 'fail' : skipped ? 'skip' : 'pass',
      failureType: data.details?.error?.failureType,
      message: event.type === 'test:fail' ? message(data.details?.error) : '',
      wholeFile,
      children,
    }
    if (data.nesting === 0) results.push(...flush(file, node, ''))
    else {
      if (byLevel[data.nesting] === undefined) byLevel[data.nesting] = []
      byLevel[data.nesting].push(node)
    }
  }
  for (const result of results) {
    const said = notes.get(result.file)
    if (result.wholeFile && result.status === 'fail' && said !== undefined) {
      result.message = `${result.message}: ${said.trim().split('\n').slice(-6).join('\n')}`
    }
    delete result.wholeFile
    yield `${JSON.stringify(result)}\n`
  }
}
