// Keeps docs/API.md in sync with index.d.ts: parses the declarations with the TypeScript compiler
// API and fails when docs/API.md lacks an export, a ChatRunServiceOptions property, a
// ChatRunService method, a ChatRun property (or a member of any other exported type), or when a
// table row of a type's section names a member that index.d.ts no longer declares.
//
// "Documented" means: the export has a heading whose first code span is its name (`ChatRun`,
// `createChatRunService(options)`), and each member appears inside that heading's section as a
// code span starting with the member name, optionally behind one `object.` prefix (`status`,
// `runs.cancel(run)`).
import fs from 'node:fs'
import path from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'
import { ROOT } from './helpers'

const dtsPath = path.join(ROOT, 'index.d.ts')
const docPath = path.join(ROOT, 'docs', 'API.md')

type Declared = { name: string; kind: string; members: string[] }

function declaredApi(source: string): Declared[] {
  const sf = ts.createSourceFile('index.d.ts', source, ts.ScriptTarget.Latest, true)
  const memberName = (m: ts.TypeElement) => (m.name ? m.name.getText(sf).replace(/^['"]|['"]$/g, '') : null)
  const literalMembers = (node: ts.TypeNode, out: string[]) => {
    if (ts.isTypeLiteralNode(node)) {
      for (const m of node.members) {
        const n = memberName(m)
        if (n) out.push(n)
      }
    } else if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) {
      for (const t of node.types) literalMembers(t, out)
    } else if (ts.isParenthesizedTypeNode(node)) {
      literalMembers(node.type, out)
    }
    return out
  }
  const out: Declared[] = []
  for (const st of sf.statements) {
    const exported = ts.canHaveModifiers(st) && ts.getModifiers(st)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
    if (!exported) continue
    if (ts.isInterfaceDeclaration(st)) {
      const members = st.members.map(memberName).filter((n): n is string => n !== null) // index signatures have no name
      out.push({ name: st.name.text, kind: 'interface', members })
    } else if (ts.isTypeAliasDeclaration(st)) {
      out.push({ name: st.name.text, kind: 'type', members: literalMembers(st.type, []) })
    } else if (ts.isFunctionDeclaration(st) && st.name) {
      out.push({ name: st.name.text, kind: 'function', members: [] })
    } else if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) {
        if (ts.isIdentifier(d.name)) out.push({ name: d.name.text, kind: 'const', members: [] })
      }
    } else {
      throw new Error(`api-docs.test does not know this kind of export: ${ts.SyntaxKind[st.kind]}`)
    }
  }
  for (const d of out) d.members = [...new Set(d.members)]
  return out
}

type Section = { name: string; level: number; body: string }

const codeSpans = (text: string) => [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1])
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
// `name`, `name(...)`, `name?`, `obj.name(...)`, `name: type` all count; `nameSuffix` does not.
const namesIn = (span: string, name: string) => new RegExp(`^(?:[\\w$]+\\.)?${escape(name)}(?![\\w$])`).test(span)

function docSections(markdown: string): Section[] {
  const lines = markdown.split('\n')
  const headings: Array<{ line: number; level: number; text: string }> = []
  let fence = false
  lines.forEach((line, i) => {
    if (line.startsWith('```')) fence = !fence
    const m = !fence && /^(#{1,6})\s+(.*)$/.exec(line)
    if (m) headings.push({ line: i, level: m[1].length, text: m[2] })
  })
  return headings.map((h, idx) => {
    const next = headings.slice(idx + 1).find((o) => o.level <= h.level)
    const name = codeSpans(h.text)[0]?.match(/^[\w$]+/)?.[0] ?? ''
    return { name, level: h.level, body: lines.slice(h.line, next ? next.line : lines.length).join('\n') }
  })
}

/** Every problem that makes docs/API.md out of date with respect to the declarations (or `only` of them). */
function problems(declared: Declared[], markdown: string, only: Declared[] = declared): string[] {
  const sections = docSections(markdown)
  const found: string[] = []
  const declaredNames = new Set(declared.map((d) => d.name))
  for (const d of only) {
    const section = sections.find((s) => s.name === d.name)
    if (!section) {
      found.push(`export ${d.name} (${d.kind}) has no heading in docs/API.md`)
      continue
    }
    const spans = codeSpans(section.body)
    for (const member of d.members) {
      if (!spans.some((span) => namesIn(span, member)))
        found.push(`${d.name}.${member} is not documented in the ${d.name} section`)
    }
    // Stale rows: the first cell of each table row in the section (outside nested sections of
    // other exports) must name a declared member.
    if (d.members.length > 0) {
      for (const row of section.body.split('\n').filter((l) => /^\|\s*`/.test(l))) {
        const first = codeSpans(row.split('|')[1] ?? '')[0]
        const name = first?.match(/^(?:[\w$]+\.)?([\w$]+)/)?.[1]
        if (name && !d.members.includes(name))
          found.push(`docs/API.md documents ${d.name}.${name}, which index.d.ts does not declare`)
      }
    }
  }
  // Headings naming an export that no longer exists.
  if (only !== declared) return found
  for (const s of sections) {
    if (s.level >= 2 && /^[A-Z]/.test(s.name) && !declaredNames.has(s.name))
      found.push(`docs/API.md has a section for ${s.name}, which index.d.ts does not export`)
  }
  return found
}

describe('docs/API.md is in sync with index.d.ts', () => {
  const declared = declaredApi(fs.readFileSync(dtsPath, 'utf8'))
  const markdown = fs.readFileSync(docPath, 'utf8')
  const byName = new Map(declared.map((d) => [d.name, d]))

  it('parses the declarations the daemon uses', () => {
    expect(byName.get('createChatRunService')?.kind).toBe('function')
    expect(byName.get('TERMINAL_RUN_STATUSES')?.kind).toBe('const')
    expect(byName.get('ChatRunServiceOptions')?.members).toEqual(
      expect.arrayContaining([
        'createSseResponse',
        'createSseErrorPayload',
        'maxEvents',
        'ttlMs',
        'shutdownGraceMs',
        'runsLogDir',
        'onEventEmitted',
        'beforeFinish',
        'onTerminal',
        'durableFields',
      ]),
    )
    // MOD-2: the 15 methods of Part I, LC-3/LC-4/LC-6's createOrReuse, prepareRestart, persistState,
    // §22's eleven and LC-10's two.
    expect(byName.get('ChatRunService')?.members).toHaveLength(36)
    expect(byName.get('ChatRun')?.members).toEqual(
      expect.arrayContaining(['id', 'status', 'events', 'clients', 'processGroupId']),
    )
  })

  it('every count of the service methods the docs state is the declared one', () => {
    const count = byName.get('ChatRunService')!.members.length
    const stated = (text: string) => [...text.matchAll(/\b(\d+) (?:methods|closures)\b/g)].map((m) => Number(m[1]))
    expect(stated(markdown).length).toBeGreaterThan(0)
    expect(stated(markdown).filter((n) => n !== count)).toEqual([])
    expect(stated(fs.readFileSync(dtsPath, 'utf8')).filter((n) => n !== count)).toEqual([])
    // docs/SPEC.md: MOD-2's amendment chain ends at the count, and OBS-1 names it.
    const spec = fs.readFileSync(path.join(ROOT, 'docs', 'SPEC.md'), 'utf8')
    const mod2 = spec.slice(spec.indexOf('- **MOD-2**'), spec.indexOf('- **MOD-3**'))
    expect(stated(mod2).at(-1)).toBe(count)
    expect(spec).toContain(`its ${count} methods, MOD-2`)
  })

  it('documents every export, option, method, run field and type member', () => {
    expect(problems(declared, markdown)).toEqual([])
  })

  for (const name of ['ChatRunServiceOptions', 'ChatRunService', 'ChatRun']) {
    it(`documents every ${name} member in its own section`, () => {
      const d = byName.get(name)!
      expect(d.members.length).toBeGreaterThan(0)
      expect(problems(declared, markdown, [d])).toEqual([])
    })
  }

  it('the checker notices a missing member, a missing export and a stale row', () => {
    const withoutTtl = markdown.replace(/^\| `ttlMs` .*\n/m, '')
    expect(problems(declared, withoutTtl)).toContain(
      'ChatRunServiceOptions.ttlMs is not documented in the ChatRunServiceOptions section',
    )
    const withoutCancel = markdown.replace(/`cancel`/g, '`x`').replace(/runs\.cancel\(/g, 'runs.x(')
    expect(problems(declared, withoutCancel)).toContain(
      'ChatRunService.cancel is not documented in the ChatRunService section',
    )
    const extraExport = [...declared, { name: 'NewThing', kind: 'type', members: [] }]
    expect(problems(extraExport, markdown)).toContain('export NewThing (type) has no heading in docs/API.md')
    const staleRow = markdown.replace(
      '| `pluginId` | `string \\| null` | from meta |',
      '| `oldField` | `x` | - |\n| `pluginId` | `string \\| null` | from meta |',
    )
    expect(staleRow).not.toBe(markdown)
    expect(problems(declared, staleRow)).toContain(
      'docs/API.md documents ChatRun.oldField, which index.d.ts does not declare',
    )
  })
})
