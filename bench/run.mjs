// Side-by-side benchmark: the native chat-run service against the JS baseline (bench/baseline.js).
//
//   node bench/run.mjs [scenario ...] [--rounds N] [--quick]
//
// Every scenario runs in a fresh `node --expose-gc` process per implementation and round; rounds
// alternate the order (native first, then baseline first, ...). The table shows the medians over
// the rounds and the ratio native/baseline against the goals in bench/README.md. Results are also
// written to bench/results/latest.json.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

// Goals: ratio = native median / baseline median; `op` says which side of `ratio` passes.
const SCENARIOS = {
  'emit-persist': [
    { key: 'eventsPerSec', label: 'emit throughput (events/s)', goal: { op: '>=', ratio: 3 } },
    { key: 'durableMs', label: 'time until durable (ms)', goal: { op: '<=', ratio: 0.4 } },
    { key: 'loopMs', label: 'emit loop (ms)' },
    { key: 'finishToDurableMs', label: 'finish all + flush (ms)' },
  ],
  'emit-memory': [
    { key: 'rssBytesPerEvent', label: 'RSS growth (B/event)', goal: { op: '<=', ratio: 0.3 } },
    { key: 'heapExtBytesPerEvent', label: 'heap+external growth (B/event)', goal: { op: '<=', ratio: 0.3 } },
    { key: 'gcMs', label: 'forced full gc() (ms)', goal: { op: '<=', ratio: 0.05 } },
    { key: 'emitLoopMs', label: 'emit loop incl. JSON.parse (ms)' },
  ],
  'replay-sse': [
    { key: 'nsPerFrameFirst', label: 'ns/frame, first pass', goal: { op: '<=', ratio: 1.2 } },
    { key: 'nsPerFrameWarm', label: 'ns/frame, warm pass', goal: { op: '<=', ratio: 1.0 } },
  ],
  list: [{ key: 'usPerList', label: 'us per list({ conversationId })', goal: { op: '<=', ratio: 0.1 } }],
  lifecycle: [{ key: 'runsPerSec', label: 'runs/s', goal: { op: '>=', ratio: 1.5 } }],
  shutdown: [
    {
      key: 'shutdownMs',
      label: 'shutdownActive({ graceMs: 200 }) (ms)',
      goal: { op: '<=', ratio: 1.0, allDead: true },
    },
    { key: 'groupsAlive', label: 'groups alive after resolve (max)', reduce: 'max' },
  ],
}

function parseArgs(argv) {
  const out = { names: [], rounds: 3, quick: false }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--quick') out.quick = true
    else if (arg === '--rounds') out.rounds = Number(argv[++i])
    else if (arg.startsWith('--rounds=')) out.rounds = Number(arg.slice(9))
    else if (arg in SCENARIOS) out.names.push(arg)
    else {
      process.stderr.write(`unknown argument ${arg}; scenarios: ${Object.keys(SCENARIOS).join(', ')}\n`)
      process.exit(2)
    }
  }
  if (!Number.isInteger(out.rounds) || out.rounds < 1) {
    process.stderr.write('--rounds must be an integer >= 1\n')
    process.exit(2)
  }
  if (out.names.length === 0) out.names = Object.keys(SCENARIOS)
  return out
}

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

function fmt(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return String(x)
  const a = Math.abs(x)
  if (a >= 1000) return Math.round(x).toLocaleString('en-US')
  if (a >= 100) return x.toFixed(1)
  if (a >= 10) return x.toFixed(2)
  if (a >= 1) return x.toFixed(3)
  if (a === 0) return '0'
  return x.toPrecision(3)
}

function runOne(name, impl, quick) {
  const script = path.join(here, 'scenarios', `${name}.mjs`)
  const args = ['--expose-gc', script, impl, ...(quick ? ['--quick'] : [])]
  const t0 = process.hrtime.bigint()
  const res = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20 })
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6
  const lines = (res.stdout || '').trim().split('\n').filter(Boolean)
  let result = null
  try {
    result = JSON.parse(lines.at(-1))
  } catch {
    // reported below
  }
  if (res.status !== 0 || !result) {
    const why = res.error ? res.error.message : `exit ${res.status} signal ${res.signal}`
    process.stderr.write(`  ${name} ${impl}: FAILED (${why})\n${res.stderr || ''}\n`)
    return { ok: false, wallMs, error: why, stderr: res.stderr }
  }
  if (res.stderr && res.stderr.trim()) process.stderr.write(`  ${name} ${impl} stderr: ${res.stderr.trim()}\n`)
  return { ok: true, wallMs, ...result }
}

function table(rows) {
  const header = ['scenario', 'metric', 'native', 'baseline', 'native/baseline', 'goal', 'result']
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c]).length)))
  const line = (r) =>
    r
      .map((cell, c) => (c >= 2 && c <= 4 ? String(cell).padStart(widths[c]) : String(cell).padEnd(widths[c])))
      .join(' | ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n')
}

const opts = parseArgs(process.argv.slice(2))
const argText = process.argv.slice(2).join(' ')
const command =
  process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${argText ? ` -- ${argText}` : ''}   (npm run build && node bench/run.mjs${argText ? ` ${argText}` : ''})`
    : `node bench/run.mjs${argText ? ` ${argText}` : ''}`

function buildInfo() {
  const root = path.join(here, '..')
  const git = (...args) => {
    const r = spawnSync('git', args, { cwd: root, encoding: 'utf8' })
    return r.status === 0 ? r.stdout.trim() : null
  }
  const head = git('rev-parse', '--short', 'HEAD')
  const dirty =
    (git('status', '--porcelain', '--', 'src', 'crates', 'lib', 'index.js', 'binding.js', 'Cargo.toml') || '') !== ''
  const addon = fs.readdirSync(root).find((f) => f.endsWith('.node'))
  let addonInfo = null
  if (addon) {
    const file = path.join(root, addon)
    const hash = createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 12)
    addonInfo = { file: addon, sha256: hash, mtime: fs.statSync(file).mtime.toISOString() }
  }
  return { head, dirty, addon: addonInfo }
}

const build = buildInfo()
const started = new Date()
const startedAt = process.hrtime.bigint()
const loadStart = os.loadavg()
console.log(`$ ${command}`)
console.log(
  `# ${started.toISOString()}  node ${process.version}  ${os.cpus().length} cpus (${os.cpus()[0]?.model ?? '?'})  ` +
    `loadavg ${loadStart.map((x) => x.toFixed(2)).join(' ')}  rounds ${opts.rounds}${opts.quick ? '  QUICK (sizes / 10)' : ''}`,
)
console.log(
  `# git ${build.head}${build.dirty ? ' (+ uncommitted changes in src/, index.js or binding.js)' : ''}  ` +
    (build.addon
      ? `addon ${build.addon.file} sha256 ${build.addon.sha256} built ${build.addon.mtime}`
      : 'addon: none found'),
)
console.log(
  '# each cell: median over rounds, each round a fresh `node --expose-gc` process per implementation, order alternated',
)

const results = {}
for (const name of opts.names) {
  const samples = { native: [], baseline: [] }
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? ['native', 'baseline'] : ['baseline', 'native']
    for (const impl of order) {
      const r = runOne(name, impl, opts.quick)
      samples[impl].push(r)
      process.stderr.write(
        `  ${name} round ${round + 1} ${impl}: ${(r.wallMs / 1000).toFixed(1)} s${r.ok && r.verified === false ? ' (VERIFICATION FAILED)' : ''}\n`,
      )
    }
  }
  results[name] = { samples }
}

const rows = []
let goals = 0
let met = 0
const problems = []
for (const name of opts.names) {
  const { samples } = results[name]
  const valid = (impl) => samples[impl].every((s) => s.ok && s.verified === true)
  const verifiedBoth = valid('native') && valid('baseline')
  if (!verifiedBoth) {
    for (const impl of ['native', 'baseline']) {
      samples[impl].forEach((s, i) => {
        if (!s.ok) problems.push(`${name} ${impl} round ${i + 1}: process failed (${s.error})`)
        else if (s.verified !== true) problems.push(`${name} ${impl} round ${i + 1}: verification failed`)
      })
    }
  }
  const metrics = []
  for (const m of SCENARIOS[name]) {
    const pick = (impl) => samples[impl].filter((s) => s.ok).map((s) => s[m.key])
    const reduce = m.reduce === 'max' ? (v) => Math.max(...v) : median
    const native = reduce(pick('native'))
    const baseline = reduce(pick('baseline'))
    const ratio = baseline === 0 ? NaN : native / baseline
    let goalText = ''
    let pass = null
    if (m.goal) {
      goals++
      goalText = `${m.goal.op} ${m.goal.ratio}x${m.goal.allDead ? ', all groups dead' : ''}`
      pass = verifiedBoth && (m.goal.op === '>=' ? ratio >= m.goal.ratio : ratio <= m.goal.ratio)
      if (m.goal.allDead) pass = pass && samples.native.every((s) => s.ok && s.allDead === true)
      if (pass) met++
    }
    metrics.push({ key: m.key, label: m.label, native, baseline, ratio, goal: m.goal ?? null, pass })
    rows.push([
      name,
      m.label,
      fmt(native),
      fmt(baseline),
      m.reduce === 'max' ? '' : `${fmt(ratio)}x`,
      goalText || '-',
      pass === null ? '' : pass ? 'PASS' : verifiedBoth ? 'FAIL' : 'INVALID',
    ])
  }
  results[name].metrics = metrics
  results[name].verified = verifiedBoth
}

const buildEnd = buildInfo()
if (buildEnd.addon?.sha256 !== build.addon?.sha256 || buildEnd.head !== build.head) {
  problems.push(
    `the addon or HEAD changed during the run (now ${buildEnd.head}, addon ${buildEnd.addon?.sha256}): results mix builds`,
  )
}
const wallSeconds = Number(process.hrtime.bigint() - startedAt) / 1e9
const loadEnd = os.loadavg()
console.log('')
console.log(table(rows))
console.log('')
if (problems.length) for (const p of problems) console.log(`! ${p}`)
else console.log('# every process verified its own output (line counts on disk, frames, results, dead groups)')
console.log(
  `${met} of ${goals} goals met  (wall ${wallSeconds.toFixed(1)} s, loadavg at end ${loadEnd.map((x) => x.toFixed(2)).join(' ')})`,
)

const outDir = path.join(here, 'results')
fs.mkdirSync(outDir, { recursive: true })
const outFile = path.join(outDir, opts.quick ? 'latest-quick.json' : 'latest.json')
fs.writeFileSync(
  outFile,
  JSON.stringify(
    {
      command,
      build,
      startedAt: started.toISOString(),
      wallSeconds,
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? null,
      loadavgStart: loadStart,
      loadavgEnd: loadEnd,
      rounds: opts.rounds,
      quick: opts.quick,
      summary: { goals, met },
      problems,
      scenarios: results,
    },
    null,
    2,
  ) + '\n',
)
console.log(`# results: ${path.relative(process.cwd(), outFile) || outFile}`)
