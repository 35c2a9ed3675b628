// SPEC §12 mediaExecution normalization (MED-1..MED-7, SB-1), §13 toolBundle normalization (TB-1..TB-3,
// SV-1..SV-11) and §14 the redacted toolBundle summary (SUM-1..SUM-5), all through create() and
// statusBody().
import fs from 'node:fs'
import { describe, expect, it } from 'vitest'
import { EXAMPLE_TOOL_BUNDLE_SERVERS, exampleToolBundle, makeRuns, useTempDirs } from './helpers'

const tempDir = useTempDirs('spec-sum4-')

describe('§12 mediaExecution normalization (through create)', () => {
  const media = (value: unknown) => {
    const { runs } = makeRuns()
    const run = runs.create({ mediaExecution: value })
    expect(runs.statusBody(run).mediaExecution).toEqual(run.mediaExecution)
    return run.mediaExecution
  }

  it('MED-1: undefined or null gives { mode: enabled }', () => {
    expect(media(undefined)).toEqual({ mode: 'enabled' })
    expect(media(null)).toEqual({ mode: 'enabled' })
    const { runs } = makeRuns()
    const run = runs.create()
    expect(run.mediaExecution).toEqual({ mode: 'enabled' })
  })

  it('MED-2: non-plain-object inputs are invalid; class instances, Maps and Dates pass the plain-object test', () => {
    for (const v of [['disabled'], 'disabled', 5, true, () => 'disabled']) expect(media(v)).toEqual({ mode: 'enabled' })
    class M {
      mode = 'disabled'
    }
    expect(media(new M())).toEqual({ mode: 'disabled' })
    expect(media(Object.assign(new Map(), { mode: 'question' }))).toEqual({ mode: 'question' })
    expect(media(Object.assign(new Date(0), { mode: 'disabled' }))).toEqual({ mode: 'disabled' })
  })

  it('MED-3: mode is taken verbatim if a string, enabled otherwise; only the three exact values are valid', () => {
    expect(media({ mode: 'question' })).toEqual({ mode: 'question' })
    expect(media({ mode: 'disabled' })).toEqual({ mode: 'disabled' })
    expect(media({ mode: 5, allowedSurfaces: ['image'] })).toEqual({ mode: 'enabled', allowedSurfaces: ['image'] })
    expect(media({ allowedSurfaces: ['video'] })).toEqual({ mode: 'enabled', allowedSurfaces: ['video'] })
    expect(media({ mode: 'Disabled', allowedSurfaces: ['image'] })).toEqual({ mode: 'enabled' })
    expect(media({ mode: ' disabled', allowedSurfaces: ['image'] })).toEqual({ mode: 'enabled' })
  })

  it('MED-4: allowedSurfaces must be an array of image/video/audio; duplicates dropped; [] kept; null and holes invalid', () => {
    expect(media({ mode: 'disabled', allowedSurfaces: ['video', 'image', 'video', 'audio', 'image'] })).toEqual({
      mode: 'disabled',
      allowedSurfaces: ['video', 'image', 'audio'],
    })
    expect(media({ mode: 'disabled', allowedSurfaces: [] })).toEqual({ mode: 'disabled', allowedSurfaces: [] })
    expect(media({ mode: 'disabled', allowedSurfaces: undefined })).toEqual({ mode: 'disabled' })
    // eslint-disable-next-line no-sparse-arrays
    for (const bad of [null, 'image', ['image', , 'video'], [undefined], ['Image'], ['gif'], [' image']]) {
      expect(media({ mode: 'disabled', allowedSurfaces: bad })).toEqual({ mode: 'enabled' })
    }
  })

  it('MED-5: allowedModels must be non-blank strings; stored trimmed, deduplicated after trimming; [] kept', () => {
    expect(media({ mode: 'question', allowedModels: [' gpt-image ', 'gpt-image', 'veo\t', 'x'] })).toEqual({
      mode: 'question',
      allowedModels: ['gpt-image', 'veo', 'x'],
    })
    expect(media({ mode: 'question', allowedModels: [] })).toEqual({ mode: 'question', allowedModels: [] })
    // U+0085 is not JS whitespace: kept verbatim
    expect(media({ mode: 'question', allowedModels: ['\u0085'] })).toEqual({
      mode: 'question',
      allowedModels: ['\u0085'],
    })
    for (const bad of [null, 'm', [''], ['  '], ['\u00a0\ufeff'], [5], ['ok', null]]) {
      expect(media({ mode: 'question', allowedModels: bad })).toEqual({ mode: 'enabled' })
    }
  })

  it('MED-6: output is a fresh object { mode, allowedSurfaces?, allowedModels? } in that key order', () => {
    const input = { allowedModels: ['m'], extra: 1, allowedSurfaces: ['audio'], mode: 'disabled' }
    const out = media(input)
    expect(out).not.toBe(input)
    expect(Object.keys(out)).toEqual(['mode', 'allowedSurfaces', 'allowedModels'])
    expect(out).toEqual({ mode: 'disabled', allowedSurfaces: ['audio'], allowedModels: ['m'] })
    expect(Object.keys(media({ allowedModels: ['m'], mode: 'question' }))).toEqual(['mode', 'allowedModels'])
  })

  it("MED-7: any invalid part makes the whole result { mode: 'enabled' } (fail-open)", () => {
    expect(media({ mode: 'disabled', allowedSurfaces: ['gif'] })).toEqual({ mode: 'enabled' })
    expect(media({ mode: 'disabled', allowedSurfaces: ['image'], allowedModels: [''] })).toEqual({ mode: 'enabled' })
    expect(media({ mode: 'nope', allowedSurfaces: ['image'], allowedModels: ['m'] })).toEqual({ mode: 'enabled' })
  })

  it('SB-1 (mediaExecution): null/undefined run.mediaExecution reads as { mode: enabled } in the status body', () => {
    const { runs } = makeRuns()
    const run = runs.create()
    run.mediaExecution = null
    expect(runs.statusBody(run).mediaExecution).toEqual({ mode: 'enabled' })
    run.mediaExecution = { mode: 'disabled' }
    expect(runs.statusBody(run).mediaExecution).toEqual({ mode: 'disabled' })
  })
})

describe('§13 toolBundle normalization (through create)', () => {
  const bundle = (raw: unknown) => {
    const { runs } = makeRuns()
    return runs.create({ toolBundle: raw }).toolBundle
  }
  const servers = (list: unknown[]) => bundle({ mcpServers: list }).mcpServers
  const one = (entry: unknown) => {
    const s = servers([entry])
    return s.length === 1 ? s[0] : undefined
  }

  it('TB (§13 example): the full example normalizes exactly, with key order', () => {
    const tb = bundle(exampleToolBundle())
    expect(tb).toEqual({ mcpServers: EXAMPLE_TOOL_BUNDLE_SERVERS })
    expect(JSON.stringify(tb)).toBe(JSON.stringify({ mcpServers: EXAMPLE_TOOL_BUNDLE_SERVERS }))
  })

  it('TB-1: non-plain raw or non-array mcpServers gives { mcpServers: [] }; no other keys', () => {
    for (const raw of [undefined, null, 'x', 5, [], [{ id: 'a', command: 'b' }]])
      expect(bundle(raw)).toEqual({ mcpServers: [] })
    for (const ms of [undefined, null, {}, 'x', { 0: { id: 'a', command: 'b' } }])
      expect(bundle({ mcpServers: ms })).toEqual({ mcpServers: [] })
    const tb = bundle({ mcpServers: [{ id: 'a', command: 'b' }], other: 1 })
    expect(Object.keys(tb)).toEqual(['mcpServers'])
  })

  it('TB-2/SV-1: invalid entries are dropped, order kept', () => {
    const s = servers([null, 'x', ['id'], 5, { id: 'b', command: 'cb' }, { id: 'a', command: 'ca' }, { id: 'c' }])
    expect(s.map((x: any) => x.id)).toEqual(['b', 'a'])
  })

  it('TB-3: duplicates by trimmed id, first one wins, case-sensitive; invalid entries reserve no id', () => {
    const s = servers([
      { id: 'dup', transport: 'stdio' }, // invalid: no command
      { id: ' dup', command: 'first' },
      { id: 'dup ', command: 'second' },
      { id: 'DUP', command: 'third' },
    ])
    expect(s.map((x: any) => [x.id, x.command])).toEqual([
      ['dup', 'first'],
      ['DUP', 'third'],
    ])
  })

  it('SV-2: id rules (string, trimmed, 1-64 chars, ASCII alnum first, then alnum/_/-)', () => {
    expect(one({ id: 'a'.repeat(64), command: 'c' })?.id).toBe('a'.repeat(64))
    expect(one({ id: '9a_b-C', command: 'c' })?.id).toBe('9a_b-C')
    expect(one({ id: '\t x \n', command: 'c' })?.id).toBe('x')
    for (const bad of ['a'.repeat(65), '', '  ', '_a', '-a', 'a.b', 'a b', 'é', 'a\u212a', 5, null, undefined]) {
      expect(one({ id: bad, command: 'c' })).toBeUndefined()
    }
  })

  it('SV-3: transport is verbatim stdio/sse/http; non-string gives stdio', () => {
    expect(one({ id: 'a', command: 'c' })?.transport).toBe('stdio')
    expect(one({ id: 'a', transport: null, command: 'c' })?.transport).toBe('stdio')
    expect(one({ id: 'a', transport: 5, command: 'c' })?.transport).toBe('stdio')
    expect(one({ id: 'a', transport: 'sse', url: 'https://h/' })?.transport).toBe('sse')
    for (const bad of ['HTTP', ' http', 'ws', ''])
      expect(one({ id: 'a', transport: bad, url: 'https://h/', command: 'c' })).toBeUndefined()
  })

  it('SV-4: enabled is false only for boolean false', () => {
    expect(one({ id: 'a', command: 'c', enabled: false })?.enabled).toBe(false)
    for (const v of [undefined, 'false', 0, null, true])
      expect(one({ id: 'a', command: 'c', enabled: v })?.enabled).toBe(true)
  })

  it('SV-5: label and templateId are kept trimmed when non-blank strings, otherwise omitted', () => {
    const s = one({ id: 'a', command: 'c', label: '  My Tools ', templateId: '\u00a0tpl\u2028' })
    expect(s.label).toBe('My Tools')
    expect(s.templateId).toBe('tpl')
    const t = one({ id: 'a', command: 'c', label: '   ', templateId: 5 })
    expect('label' in t).toBe(false)
    expect('templateId' in t).toBe(false)
  })

  it('SV-6: stdio needs a non-blank command (trimmed); args keep string elements verbatim; url/headers/authMode ignored', () => {
    expect(one({ id: 'a', command: '   ' })).toBeUndefined()
    expect(one({ id: 'a', command: 5 })).toBeUndefined()
    const s = one({
      id: 'a',
      command: '  npx ',
      args: [' -y ', '', 'x', 'x', 1, null, { a: 1 }],
      url: 'https://h/',
      headers: { A: 'b' },
      authMode: 'none',
    })
    expect(s).toEqual({ id: 'a', transport: 'stdio', enabled: true, command: 'npx', args: [' -y ', '', 'x', 'x'] })
    expect('args' in one({ id: 'a', command: 'c', args: [1, 2] })).toBe(false)
    expect('args' in one({ id: 'a', command: 'c', args: 'x' })).toBe(false)
  })

  it('SV-7: http/sse url is parsed as WHATWG URL; query, fragment and userinfo kept; bad schemes invalid', () => {
    expect(one({ id: 'a', transport: 'http', url: ' http://u:p@Example.COM:80/a/./b/../c?q=1#frag ' })?.url).toBe(
      'http://u:p@example.com/a/c?q=1#frag',
    )
    expect(one({ id: 'a', transport: 'sse', url: 'https://h.example' })?.url).toBe('https://h.example/')
    for (const bad of [
      'file:///etc/passwd',
      'javascript:alert(1)',
      'localhost:3000',
      'ftp://h/',
      '/relative',
      '',
      '  ',
      5,
    ]) {
      expect(one({ id: 'a', transport: 'http', url: bad })).toBeUndefined()
    }
    expect(one({ id: 'a', transport: 'http' })).toBeUndefined()
    const s = one({ id: 'a', transport: 'http', url: 'https://h/', command: 'node', args: ['x'], env: { A: 'b' } })
    expect(s).toEqual({ id: 'a', transport: 'http', enabled: true, url: 'https://h/', authMode: 'oauth' })
  })

  it("SV-7/SV-8: authMode is kept when exactly 'none'/'oauth', else inferred from the host", () => {
    const auth = (url: string, authMode?: unknown) => one({ id: 'a', transport: 'http', url, authMode })?.authMode
    expect(auth('http://localhost:3000/')).toBe('none')
    expect(auth('http://LOCALHOST/')).toBe('none')
    expect(auth('http://localhost./')).toBe('none')
    expect(auth('http://127.0.0.1:8080/')).toBe('none')
    expect(auth('http://127.1/')).toBe('none')
    expect(auth('http://127.255.0.3/')).toBe('none')
    expect(auth('http://[::1]:9000/')).toBe('none')
    expect(auth('http://[::ffff:127.0.0.1]/')).toBe('oauth')
    expect(auth('http://foo.localhost/')).toBe('oauth')
    expect(auth('http://128.0.0.1/')).toBe('oauth')
    expect(auth('https://example.com/')).toBe('oauth')
    expect(auth('http://localhost/', 'oauth')).toBe('oauth')
    expect(auth('https://example.com/', 'none')).toBe('none')
    expect(auth('https://example.com/', 'NONE')).toBe('oauth')
    expect(auth('http://localhost/', 'bearer')).toBe('none')
  })

  it('SV-9: string maps keep verbatim own string entries, skip __proto__/constructor/blank keys/non-string/blank values', () => {
    const env = JSON.parse(
      '{"__proto__":"p","constructor":"c","b":"1","2":"two","a":" v ","  ":"blank key","n":5,"e":"  "," K ":"k"}',
    )
    const s = one({ id: 'a', command: 'c', env })
    expect(s.env).toEqual({ 2: 'two', b: '1', a: ' v ', ' K ': 'k' })
    expect(Object.keys(s.env)).toEqual(['2', 'b', 'a', ' K '])
    expect('env' in one({ id: 'a', command: 'c', env: { x: 5, y: ' ' } })).toBe(false)
    expect('env' in one({ id: 'a', command: 'c', env: [['A', 'b']] })).toBe(false)
    expect('env' in one({ id: 'a', command: 'c', env: 'A=b' })).toBe(false)
    const h = one({ id: 'a', transport: 'http', url: 'https://h/', headers: { Authorization: 'Bearer t', X: '' } })
    expect(h.headers).toEqual({ Authorization: 'Bearer t' })
  })

  it('SV-10: key order of sanitized servers', () => {
    const stdio = one({
      env: { A: 'b' },
      args: ['x'],
      command: 'c',
      templateId: 't',
      label: 'l',
      enabled: false,
      transport: 'stdio',
      id: 'a',
    })
    expect(Object.keys(stdio)).toEqual(['id', 'transport', 'enabled', 'label', 'templateId', 'command', 'args', 'env'])
    const http = one({
      headers: { A: 'b' },
      authMode: 'none',
      url: 'https://h/',
      templateId: 't',
      label: 'l',
      transport: 'http',
      id: 'a',
    })
    expect(Object.keys(http)).toEqual([
      'id',
      'transport',
      'enabled',
      'label',
      'templateId',
      'url',
      'authMode',
      'headers',
    ])
  })

  it('SV-11: JS trim removes U+FEFF and keeps U+0085', () => {
    expect(one({ id: '\ufeffabc\ufeff', command: 'c' })?.id).toBe('abc')
    expect(one({ id: '\u0085abc', command: 'c' })).toBeUndefined()
    expect(one({ id: 'a', command: '\u0085node\ufeff' })?.command).toBe('\u0085node')
    expect(one({ id: 'a', command: 'c', label: '\u0085' })?.label).toBe('\u0085')
    expect(one({ id: 'a', command: '\ufeff\u3000' })).toBeUndefined()
  })

  it('SUM-3: the summary of the §13 example', () => {
    const { runs } = makeRuns()
    const run = runs.create({ toolBundle: exampleToolBundle() })
    const summary = runs.statusBody(run).toolBundle
    expect(summary).toEqual({
      mcpServers: [
        { id: 'run-tools', transport: 'stdio', enabled: true },
        { id: 'remote', transport: 'http', enabled: true, authMode: 'oauth' },
      ],
    })
    expect(JSON.stringify(summary)).toBe(
      JSON.stringify({
        mcpServers: [
          { id: 'run-tools', transport: 'stdio', enabled: true },
          { id: 'remote', transport: 'http', enabled: true, authMode: 'oauth' },
        ],
      }),
    )
  })

  it('SUM-4: no secret of the §13 example leaks into the status body, waiters, end data or the log', async () => {
    const tmp = tempDir()
    const { runs } = makeRuns({ runsLogDir: tmp })
    const run = runs.create({ toolBundle: exampleToolBundle() })
    const json = JSON.stringify(runs.statusBody(run))
    for (const s of ['secret', 'server.js', 'key=abc', 'Bearer', 'api.example.com']) expect(json).not.toContain(s)
    const waited = runs.wait(run)
    runs.emit(run, 'agent', { ok: true })
    runs.finish(run, 'succeeded', 0, null)
    const body = await waited
    await runs.shutdownActive()
    const texts = [JSON.stringify(body), JSON.stringify(run.events), fs.readFileSync(run.eventsLogPath, 'utf8')]
    for (const t of texts)
      for (const s of ['secret', 'server.js', 'key=abc', 'Bearer', 'api.example.com']) expect(t).not.toContain(s)
  })

  it('SUM-5: run.toolBundle keeps the full sanitized config, secrets included', () => {
    const { runs } = makeRuns()
    const run = runs.create({ toolBundle: exampleToolBundle() })
    expect(run.toolBundle.mcpServers[0].env).toEqual({ API_TOKEN: 'secret' })
    expect(run.toolBundle.mcpServers[1].headers).toEqual({ Authorization: 'Bearer t' })
    expect(run.toolBundle.mcpServers[1].url).toBe('https://api.example.com/mcp?key=abc')
  })

  it('SUM-2: each summary entry is a new object with id, label?, templateId?, transport, enabled, authMode? in that order', () => {
    const { runs } = makeRuns()
    const run = runs.create({
      toolBundle: {
        mcpServers: [
          { id: 'a', transport: 'sse', url: 'http://127.0.0.1:9/', label: 'L', templateId: 'T', enabled: false },
          { id: 'b', command: 'c', label: '  ' },
        ],
      },
    })
    const sum = runs.statusBody(run).toolBundle
    expect(Object.keys(sum)).toEqual(['mcpServers'])
    expect(Object.keys(sum.mcpServers[0])).toEqual(['id', 'label', 'templateId', 'transport', 'enabled', 'authMode'])
    expect(sum.mcpServers[0]).toEqual({
      id: 'a',
      label: 'L',
      templateId: 'T',
      transport: 'sse',
      enabled: false,
      authMode: 'none',
    })
    expect(sum.mcpServers[1]).toEqual({ id: 'b', transport: 'stdio', enabled: true })
    expect(sum.mcpServers[0]).not.toBe(run.toolBundle.mcpServers[0])
    expect(runs.statusBody(run).toolBundle).not.toBe(sum)
  })

  it('SUM-1: the summary reads run.toolBundle.mcpServers at call time; a non-array gives []', () => {
    const { runs } = makeRuns()
    const run = runs.create({ toolBundle: { mcpServers: [{ id: 'a', command: 'c' }] } })
    run.toolBundle = {
      mcpServers: [{ id: 'z', transport: 'http', enabled: true, url: 'https://h/', authMode: 'oauth', label: 'Z' }],
    }
    expect(runs.statusBody(run).toolBundle).toEqual({
      mcpServers: [{ id: 'z', label: 'Z', transport: 'http', enabled: true, authMode: 'oauth' }],
    })
    run.toolBundle = { mcpServers: 'nope' }
    expect(runs.statusBody(run).toolBundle).toEqual({ mcpServers: [] })
    run.toolBundle = null
    expect(runs.statusBody(run).toolBundle).toEqual({ mcpServers: [] })
  })
})
