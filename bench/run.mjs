// Side-by-side benchmark: the native chat-run service against the JS baseline (bench/baseline.js).
//
//   node bench/run.mjs [scenario[/pattern] ...] [--rounds N] [--quick] [--node PATH]
//
// Every scenario runs in a fresh `node --expose-gc` process per implementation, pattern and round;
// rounds alternate the order (native first, then baseline first, ...; and burst first, then
// yielding first). The emit scenarios run in two patterns, `burst` (the emit loop never yields to
// the event loop) and `yielding` (it awaits setImmediate after every round); each pattern is its
// own row. The table shows the medians over the rounds, the ratio native/baseline and the min-max
// of the per-round ratios (native of round i / baseline of round i), and marks, per scenario and
// metric, the pattern whose ratio is worse for native; the summary table and the goals use that
// worse pattern. `--node PATH` (or BENCH_NODE=PATH) runs the scenario processes on another Node
// binary. Results are also written to bench/results/latest.json.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))

// Goals: ratio = native median / baseline median; `op` says which side of `ratio` passes;
// `patterns` overrides `ratio` for one pattern (emit-persist's throughput: 2x in a burst, 3x
// yielding). A goal is met only when every pattern of the scenario meets it. `better` says which
// direction is good for native when there is no goal (used to pick the worse pattern). Scenarios
// listed in EMIT run in both PATTERNS.
const SCENARIOS = {
  'emit-persist': [
    {
      key: 'eventsPerSec',
      label: 'emit throughput (events/s)',
      goal: { op: '>=', ratio: 2, patterns: { yielding: 3 } },
    },
    { key: 'durableMs', label: 'time until durable (ms)', goal: { op: '<=', ratio: 0.4 } },
    { key: 'loopMs', label: 'emit loop (ms)', better: 'lower' },
    { key: 'finishToDurableMs', label: 'finish all + flush (ms)', better: 'lower' },
  ],
  'emit-memory': [
    { key: 'rssBytesPerEvent', label: 'RSS growth (B/event)', goal: { op: '<=', ratio: 0.1 } },
    { key: 'heapExtBytesPerEvent', label: 'heap+external growth (B/event)', goal: { op: '<=', ratio: 0.01 } },
    { key: 'gcMs', label: 'forced full gc() (ms)', goal: { op: '<=', ratio: 0.01 } },
    { key: 'emitLoopMs', label: 'emit loop incl. JSON.parse (ms)', better: 'lower' },
  ],
  'emit-nolog': [{ key: 'loopMs', label: 'emit loop, 2M emits / 1000 runs (ms)', goal: { op: '<=', ratio: 1.0 } }],
  'replay-sse': [
    { key: 'nsPerFrameFirst', label: 'ns/frame, first pass', goal: { op: '<=', ratio: 1.5 } },
    { key: 'nsPerFrameWarm', label: 'ns/frame, warm pass', goal: { op: '<=', ratio: 1.0 } },
  ],
  list: [{ key: 'usPerList', label: 'us per list({ conversationId })', goal: { op: '<=', ratio: 0.1 } }],
  lifecycle: [{ key: 'runsPerSec', label: 'runs/s', goal: { op: '>=', ratio: 1.0 } }],
  shutdown: [
    {
      key: 'shutdownMs',
      label: 'shutdownActive({ graceMs: 200 }) (ms)',
      goal: { op: '<=', ratio: 1.0, allDead: true },
    },
    { key: 'groupsAlive', label: 'groups alive after resolve (max)', reduce: 'max' },
  ],
}
const PATTERNS = ['burst', 'yielding']
const EMIT = new Set(['emit-persist', 'emit-memory', 'emit-nolog', 'lifecycle'])
const patternsOf = (name) => (EMIT.has(name) ? PATTERNS : [null])
const rowName = (name, pattern) => (pattern ? `${name}/${pattern}` : name)
const betterOf = (m) => (m.goal ? (m.goal.op === '>=' ? 'higher' : 'lower') : (m.better ?? 'lower'))
// The goal's ratio for one pattern ('-' when the scenario has none).
const goalRatio = (goal, pkey) => goal.patterns?.[pkey] ?? goal.ratio
const goalTextOf = (goal, pkey) => {
  if (!goal) return '-'
  const dead = goal.allDead ? ', all groups dead' : ''
  if (pkey !== null) return `${goal.op} ${goalRatio(goal, pkey)}x${dead}`
  const per = Object.entries(goal.patterns ?? {})
  if (per.length === 0) return `${goal.op} ${goal.ratio}x${dead}`
  return `${goal.op} ${goal.ratio}x, ${per.map(([p, r]) => `${r}x ${p}`).join(', ')}${dead}`
}

function parseArgs(argv) {
  // selected: scenario name -> Set of patterns (null for a scenario without patterns)
  const out = { selected: new Map(), rounds: 3, quick: false, node: process.env.BENCH_NODE || null }
  const select = (name, pattern) => {
    if (!out.selected.has(name)) out.selected.set(name, new Set())
    for (const p of pattern === undefined ? patternsOf(name) : [pattern]) out.selected.get(name).add(p)
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const [name, pattern, extra] = arg.split('/')
    if (arg === '--quick') out.quick = true
    else if (arg === '--rounds') out.rounds = Number(argv[++i])
    else if (arg.startsWith('--rounds=')) out.rounds = Number(arg.slice(9))
    else if (arg === '--node') out.node = argv[++i]
    else if (arg.startsWith('--node=')) out.node = arg.slice(7)
    else if (
      name in SCENARIOS &&
      extra === undefined &&
      (pattern === undefined || (EMIT.has(name) && PATTERNS.includes(pattern)))
    )
      select(name, pattern)
    else {
      process.stderr.write(
        `unknown argument ${arg}; scenarios: ${Object.keys(SCENARIOS).join(', ')}` +
          ` (emit scenarios also as <name>/${PATTERNS.join('|')})\n`,
      )
      process.exit(2)
    }
  }
  if (!Number.isInteger(out.rounds) || out.rounds < 1) {
    process.stderr.write('--rounds must be an integer >= 1\n')
    process.exit(2)
  }
  if (out.node !== null && (typeof out.node !== 'string' || out.node === '')) {
    process.stderr.write('--node needs a path\n')
    process.exit(2)
  }
  if (out.selected.size === 0) for (const name of Object.keys(SCENARIOS)) select(name)
  // Keep the scenarios in their declared order and the patterns in PATTERNS order.
  out.names = Object.keys(SCENARIOS).filter((n) => out.selected.has(n))
  out.patterns = Object.fromEntries(out.names.map((n) => [n, patternsOf(n).filter((p) => out.selected.get(n).has(p))]))
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

function minMax(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x))
  return v.length === 0 ? null : [Math.min(...v), Math.max(...v)]
}

function runOne(nodeBin, name, pattern, impl, quick) {
  const script = path.join(here, 'scenarios', `${name}.mjs`)
  const args = ['--expose-gc', script, impl, ...(pattern ? ['--pattern', pattern] : []), ...(quick ? ['--quick'] : [])]
  const t0 = process.hrtime.bigint()
  const res = spawnSync(nodeBin, args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20 })
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
    process.stderr.write(`  ${rowName(name, pattern)} ${impl}: FAILED (${why})\n${res.stderr || ''}\n`)
    return { ok: false, wallMs, error: why, stderr: res.stderr }
  }
  if (res.stderr && res.stderr.trim())
    process.stderr.write(`  ${rowName(name, pattern)} ${impl} stderr: ${res.stderr.trim()}\n`)
  return { ok: true, wallMs, ...result }
}

/** A text table; columns listed in `right` are right-aligned. */
function table(header, rows, right) {
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c]).length)))
  const line = (r) =>
    r
      .map((cell, c) => (right.includes(c) ? String(cell).padStart(widths[c]) : String(cell).padEnd(widths[c])))
      .join(' | ')
      .trimEnd()
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

const nodeBin = opts.node ? path.resolve(opts.node) : process.execPath
const nodeVersion = (() => {
  const r = spawnSync(nodeBin, ['--version'], { encoding: 'utf8' })
  if (r.status !== 0) {
    process.stderr.write(`cannot run ${nodeBin} --version: ${r.error?.message ?? r.stderr}\n`)
    process.exit(2)
  }
  return r.stdout.trim()
})()
const build = buildInfo()
const started = new Date()
const startedAt = process.hrtime.bigint()
const loadStart = os.loadavg()
console.log(`$ ${command}`)
console.log(
  `# ${started.toISOString()}  node ${nodeVersion}${opts.node ? ` (${nodeBin})` : ''}  ${os.cpus().length} cpus (${os.cpus()[0]?.model ?? '?'})  ` +
    `loadavg ${loadStart.map((x) => x.toFixed(2)).join(' ')}  rounds ${opts.rounds}${opts.quick ? '  QUICK (sizes / 10)' : ''}`,
)
console.log(
  `# git ${build.head}${build.dirty ? ' (+ uncommitted changes in src/, index.js or binding.js)' : ''}  ` +
    (build.addon
      ? `addon ${build.addon.file} sha256 ${build.addon.sha256} built ${build.addon.mtime}`
      : 'addon: none found'),
)
console.log(
  '# each cell: median over rounds, each round a fresh `node --expose-gc` process per implementation and pattern,' +
    ' order alternated; min-max: of the per-round ratios native/baseline',
)

// results[name].patterns[pattern ?? '-'] = { samples: { native: [], baseline: [] } }
const results = {}
for (const name of opts.names) {
  results[name] = { patterns: {} }
  for (const p of opts.patterns[name]) results[name].patterns[p ?? '-'] = { samples: { native: [], baseline: [] } }
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? ['native', 'baseline'] : ['baseline', 'native']
    const patterns = round % 2 === 0 ? opts.patterns[name] : [...opts.patterns[name]].reverse()
    for (const pattern of patterns) {
      for (const impl of order) {
        const r = runOne(nodeBin, name, pattern, impl, opts.quick)
        results[name].patterns[pattern ?? '-'].samples[impl].push(r)
        process.stderr.write(
          `  ${rowName(name, pattern)} round ${round + 1} ${impl}: ${(r.wallMs / 1000).toFixed(1)} s` +
            `${r.ok && r.verified !== true ? ' (VERIFICATION FAILED)' : ''}\n`,
        )
      }
    }
  }
}

const fmtRange = (mm) => (mm ? `${fmt(mm[0])}..${fmt(mm[1])}x` : '')
const rows = [] // full table: every pattern
const summaryRows = [] // the worse pattern per scenario and metric
let goals = 0
let met = 0
const problems = []
for (const name of opts.names) {
  const entry = results[name]
  entry.verified = true
  entry.metrics = []
  for (const [pkey, pr] of Object.entries(entry.patterns)) {
    const { samples } = pr
    const label = rowName(name, pkey === '-' ? null : pkey)
    const valid = (impl) => samples[impl].every((s) => s.ok && s.verified === true)
    pr.verified = valid('native') && valid('baseline')
    if (!pr.verified) {
      entry.verified = false
      for (const impl of ['native', 'baseline']) {
        samples[impl].forEach((s, i) => {
          if (!s.ok) problems.push(`${label} ${impl} round ${i + 1}: process failed (${s.error})`)
          else if (s.verified !== true) problems.push(`${label} ${impl} round ${i + 1}: verification failed`)
        })
      }
    }
    pr.metrics = SCENARIOS[name].map((m) => {
      const pick = (impl) => samples[impl].filter((s) => s.ok).map((s) => s[m.key])
      const reduce = m.reduce === 'max' ? (v) => Math.max(...v) : median
      const native = reduce(pick('native'))
      const baseline = reduce(pick('baseline'))
      const ratio = baseline === 0 ? NaN : native / baseline
      // Per-round ratios: round i's native process against round i's baseline process.
      const roundRatios = samples.native.map((s, i) => {
        const b = samples.baseline[i]
        return s.ok && b?.ok && b[m.key] !== 0 ? s[m.key] / b[m.key] : NaN
      })
      let pass = null
      if (m.goal) {
        const target = goalRatio(m.goal, pkey)
        pass = pr.verified && (m.goal.op === '>=' ? ratio >= target : ratio <= target)
        if (m.goal.allDead) pass = pass && samples.native.every((s) => s.ok && s.allDead === true)
      }
      return {
        key: m.key,
        label: m.label,
        native,
        baseline,
        ratio,
        roundRatios,
        ratioMinMax: m.reduce === 'max' ? null : minMax(roundRatios),
        nativeMinMax: minMax(pick('native')),
        baselineMinMax: minMax(pick('baseline')),
        goal: m.goal ?? null,
        pass,
        verified: pr.verified,
      }
    })
  }
  // Per metric: the pattern whose ratio is worse for native (an unverified pattern counts as worse).
  SCENARIOS[name].forEach((m, k) => {
    const keys = Object.keys(entry.patterns)
    const score = (pkey) => {
      const x = entry.patterns[pkey].metrics[k]
      if (!x.verified || !Number.isFinite(x.ratio)) return Infinity
      return betterOf(m) === 'higher' ? -x.ratio : x.ratio
    }
    const worst = keys.reduce((a, b) => (score(b) > score(a) ? b : a))
    const status = (x) => (x.pass === null ? '' : x.pass ? 'PASS' : x.verified ? 'FAIL' : 'INVALID')
    // The goal holds only when it holds in every pattern.
    const all = keys.map((pkey) => entry.patterns[pkey].metrics[k])
    const overall = {
      pass: m.goal ? all.every((x) => x.pass) : null,
      verified: all.every((x) => x.verified),
    }
    for (const pkey of keys) {
      const x = entry.patterns[pkey].metrics[k]
      rows.push({
        name,
        k,
        cells: [
          rowName(name, pkey === '-' ? null : pkey),
          m.label,
          fmt(x.native),
          fmt(x.baseline),
          m.reduce === 'max' ? '' : `${fmt(x.ratio)}x`,
          fmtRange(x.ratioMinMax),
          goalTextOf(m.goal, pkey === '-' ? null : pkey),
          status(x),
          keys.length > 1 && pkey === worst ? '<- worse' : '',
        ],
      })
    }
    const w = entry.patterns[worst].metrics[k]
    if (m.goal) {
      goals++
      if (overall.pass) met++
    }
    entry.metrics.push({ ...w, pattern: worst === '-' ? null : worst, goalMet: overall.pass })
    summaryRows.push([
      name,
      m.label,
      worst,
      fmt(w.native),
      fmt(w.baseline),
      m.reduce === 'max' ? '' : `${fmt(w.ratio)}x`,
      fmtRange(w.ratioMinMax),
      goalTextOf(m.goal, null),
      status(overall),
    ])
  })
}
// Full table: group the rows by scenario, then metric, then pattern.
rows.sort((a, b) => opts.names.indexOf(a.name) - opts.names.indexOf(b.name) || a.k - b.k)

const buildEnd = buildInfo()
if (buildEnd.addon?.sha256 !== build.addon?.sha256 || buildEnd.head !== build.head) {
  problems.push(
    `the addon or HEAD changed during the run (now ${buildEnd.head}, addon ${buildEnd.addon?.sha256}): results mix builds`,
  )
}
const wallSeconds = Number(process.hrtime.bigint() - startedAt) / 1e9
const loadEnd = os.loadavg()
console.log('')
console.log('## every pattern (`<- worse`: the pattern whose native/baseline is worse for native, per metric)')
console.log(
  table(
    ['scenario', 'metric', 'native', 'baseline', 'native/baseline', 'min-max', 'goal', 'result', ''],
    rows.map((r) => r.cells),
    [2, 3, 4, 5],
  ),
)
console.log('')
console.log('## summary: the worse pattern per scenario and metric (goals are counted on these rows)')
console.log(
  table(
    ['scenario', 'metric', 'pattern', 'native', 'baseline', 'native/baseline', 'min-max', 'goal', 'result'],
    summaryRows,
    [3, 4, 5, 6],
  ),
)
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
      node: nodeVersion,
      nodeBin,
      driverNode: process.version,
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
