// Rule ids resolve: every rule id cited anywhere in the repo (code comments, test names, docs,
// README) must be defined in docs/SPEC.md, and no file may point at the specification's old
// home outside the repo.
//
// "Defined" means: the id opens a bullet (`- **CRE-3** …`, `- **IMP-13 (SHOULD) …**`) or a
// heading (`### LC-1 …`) of docs/SPEC.md. The id families are read from those definitions, so a
// new family needs no change here. A reference is `FAMILY-<n>` for one of those families (so
// `UTF-8` or `SHA-256` never count), or, in Rust, a test function named after a rule
// (`fn imp_5_refuses_…`).
//
// The repo is walked, not listed: files may move while the layout changes. Generated, vendored
// and binary files are skipped (see SKIP_DIRS, SKIP_FILES, isText).
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const root = path.resolve(__dirname, '..')
const specPath = path.join(root, 'docs', 'SPEC.md')

// Directory names skipped wherever they occur, and paths (relative to the root) skipped as a whole.
const SKIP_DIRS = new Set(['.git', 'node_modules', 'target', 'corpus', 'artifacts', 'coverage', '.vitest-cache'])
const SKIP_PATHS = new Set(['dist', 'npm', 'bench/results'])
// Generated or lock files: binding.js is written by `napi build`.
const SKIP_FILES = new Set(['binding.js', 'package-lock.json'])
const TEXT_EXTENSIONS = new Set([
  '.rs',
  '.js',
  '.cjs',
  '.mjs',
  '.ts',
  '.mts',
  '.cts',
  '.md',
  '.toml',
  '.json',
  '.yml',
  '.yaml',
  '.sh',
  '.html',
])
// The spec's old location, built so this file does not mention it itself.
const OUTSIDE_SPEC = new RegExp(['\\.\\.', 'shared'].join('/') + '|' + ['', 'work', 'shared'].join('/'))

type Definition = { id: string; line: number }

function specDefinitions(markdown: string): Definition[] {
  const out: Definition[] = []
  let fence = false
  markdown.split('\n').forEach((text, i) => {
    if (/^\s*```/.test(text)) fence = !fence
    if (fence) return
    const m = /^- \*\*([A-Z]{2,4}(?:-\d+)?)\b/.exec(text) ?? /^#{1,6} ([A-Z]{2,4}-\d+)\b/.exec(text)
    if (m) out.push({ id: m[1], line: i + 1 })
  })
  return out
}

function isText(file: string): boolean {
  const ext = path.extname(file)
  if (ext === '.lock') return false
  if (TEXT_EXTENSIONS.has(ext)) return true
  if (ext !== '') return false
  // Extensionless files (scripts such as .ci/run, LICENSE): text when small and free of NUL bytes.
  const stat = fs.statSync(file)
  if (stat.size > 1 << 20) return false
  return !fs.readFileSync(file).includes(0)
}

function repoFiles(dir = root, out: string[] = []): string[] {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    const rel = path.relative(root, full).split(path.sep).join('/')
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name) && !SKIP_PATHS.has(rel)) repoFiles(full, out)
    } else if (entry.isFile() && !SKIP_FILES.has(entry.name) && isText(full)) {
      out.push(full)
    }
  }
  return out
}

type Reference = { file: string; line: number; id: string }

function references(files: string[], families: string[]): Reference[] {
  const alternatives = families.join('|')
  const cited = new RegExp(`\\b(?:${alternatives})-\\d+\\b`, 'g')
  // Rust tests named after a rule: `fn imp_5_refuses_…` cites IMP-5.
  const rustTest = new RegExp(`\\bfn\\s+(${alternatives.toLowerCase()})_(\\d+)_`, 'g')
  const out: Reference[] = []
  for (const file of files) {
    const rel = path.relative(root, file).split(path.sep).join('/')
    const rust = file.endsWith('.rs')
    fs.readFileSync(file, 'utf8')
      .split('\n')
      .forEach((text, i) => {
        for (const m of text.matchAll(cited)) out.push({ file: rel, line: i + 1, id: m[0] })
        if (rust) {
          for (const m of text.matchAll(rustTest))
            out.push({ file: rel, line: i + 1, id: `${m[1].toUpperCase()}-${m[2]}` })
        }
      })
  }
  return out
}

const spec = fs.readFileSync(specPath, 'utf8')
const definitions = specDefinitions(spec)
const defined = new Set(definitions.map((d) => d.id))
const families = [...new Set(definitions.map((d) => /^([A-Z]+)-\d+$/.exec(d.id)?.[1]).filter((f): f is string => !!f))]
const files = repoFiles()

describe('rule ids (docs/SPEC.md)', () => {
  it('docs/SPEC.md defines the rule families the code cites, each id once', () => {
    for (const family of ['MOD', 'RUN', 'CRE', 'EMT', 'CAN', 'SHD', 'LOG', 'IMP', 'LC'])
      expect(families).toContain(family)
    expect(defined.has('WCE')).toBe(true)
    const seen = new Map<string, number>()
    const duplicates: string[] = []
    for (const d of definitions) {
      const first = seen.get(d.id)
      if (first !== undefined) duplicates.push(`docs/SPEC.md:${d.line} ${d.id} (first defined at line ${first})`)
      else seen.set(d.id, d.line)
    }
    expect(duplicates, `rule ids defined more than once:\n${duplicates.join('\n')}`).toEqual([])
  })

  it('the walk reaches the code, the tests and the docs', () => {
    const rel = new Set(files.map((f) => path.relative(root, f).split(path.sep).join('/')))
    for (const expected of ['README.md', 'docs/SPEC.md', 'index.js', '__test__/runs.test.ts'])
      expect(rel).toContain(expected)
    expect([...rel].some((f) => f.endsWith('.rs'))).toBe(true)
    expect(
      [...rel].some((f) => f.startsWith('node_modules/') || f.includes('/target/') || f.endsWith('binding.js')),
    ).toBe(false)
  })

  it('every rule id cited in the repo is defined in docs/SPEC.md', () => {
    const refs = references(files, families)
    expect(refs.length).toBeGreaterThan(100)
    const missing = refs.filter((r) => !defined.has(r.id)).map((r) => `${r.file}:${r.line} ${r.id}`)
    expect(missing, `rule ids cited but not defined in docs/SPEC.md:\n${missing.join('\n')}`).toEqual([])
  })

  it('no file points at a specification outside the repo', () => {
    const hits: string[] = []
    for (const file of files) {
      fs.readFileSync(file, 'utf8')
        .split('\n')
        .forEach((text, i) => {
          if (OUTSIDE_SPEC.test(text)) hits.push(`${path.relative(root, file)}:${i + 1}: ${text.trim()}`)
        })
    }
    expect(hits, `files that point outside the repo:\n${hits.join('\n')}`).toEqual([])
  })
})
