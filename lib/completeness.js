'use strict'
// Did the run's declared work finish? The verdict's `endedWithUnfinishedWork` (SPEC HF-11, HF-12,
// HF-18), derived from the signals the daemon folds onto the run while it streams: the last
// TodoWrite plan, a turn cut off at its token limit, media failures not recovered, and the three
// pieces of evidence that outrank a stale plan (the strategy task's verified verdict, the agent's
// authenticated done conclusion, a turn that ended on a question form for the user).

const isObject = (value) => value !== null && typeof value === 'object'

/** HF-12: a media failure noted on the run that no later success recovered. */
function mediaWorkUnfinished(run) {
  const failures = run.mediaTaskFailures
  return Array.isArray(failures) && failures.some((f) => isObject(f) && f.recoveredByTaskId === undefined)
}

/** HF-11: the TodoWrite plan (`run.lastTodoSnapshot`) holds a task whose status is not 'completed'. */
function planHasOpenTask(run) {
  const todos = run.lastTodoSnapshot
  return Array.isArray(todos) && todos.some((todo) => isObject(todo) && todo.status !== 'completed')
}

// HF-18: a question form the web client renders as a card: an opening `<question-form ...>` (or
// its alias `<ask-question ...>`, any case), its closing tag after it, and between them JSON
// (optionally in a ``` fence) of an object whose `questions` array holds an object. A tag only
// mentioned in prose, or a block whose body is not such JSON, is no question to the user. The
// tags are read in one pass: an opening tag's form is closed by the next closing tag of its kind,
// unless another opening tag comes first (the one mentioned earlier was prose). An opening tag
// cannot span a `<`, so a text of unclosed tags is still read in linear time.
const FORM_TAG = /<(question-form|ask-question)\b[^<>]*>|<\/(question-form|ask-question)>/gi

function formBodyRenders(body) {
  let text = body.trim()
  if (text.startsWith('```')) text = text.replace(/^```[a-z]*\s*/i, '')
  if (text.endsWith('```')) text = text.slice(0, -3)
  let value
  try {
    value = JSON.parse(text)
  } catch {
    return false
  }
  return isObject(value) && Array.isArray(value.questions) && value.questions.some(isObject)
}

/** HF-18: `text` (the turn's visible text, `run.askUserScanText`) renders a question form. */
function rendersQuestionForm(text) {
  if (typeof text !== 'string' || text === '') return false
  let openKind = null
  let bodyStart = 0
  FORM_TAG.lastIndex = 0
  for (let tag = FORM_TAG.exec(text); tag !== null; tag = FORM_TAG.exec(text)) {
    if (tag[1] !== undefined) {
      openKind = tag[1].toLowerCase()
      bodyStart = tag.index + tag[0].length
    } else if (openKind === tag[2].toLowerCase()) {
      if (formBodyRenders(text.slice(bodyStart, tag.index))) return true
      openKind = null
    }
  }
  return false
}

/**
 * HF-18: evidence that outranks the plan: the strategy task's verdict proves delivery (terminal and
 * 'completed'), or a succeeded run's agent declared its work done (`authenticatedDoneConclusion`)
 * or ended its turn asking the user (a rendered question form).
 */
function workProvenDone(run, status) {
  const task = run.strategyTask
  if (isObject(task) && task.terminal === true && task.outcome === 'completed') return true
  if (status !== 'succeeded') return false
  return run.authenticatedDoneConclusion === true || rendersQuestionForm(run.askUserScanText)
}

/**
 * HF-11, HF-12, HF-18: at a verdict with `status`, `run.endedWithUnfinishedWork` becomes true when the
 * last turn was cut off (`truncatedMidTurn`), a media failure is unrecovered, or the plan has an
 * open task that no evidence of HF-18 outranks; a true value the host set stays. A getter that
 * throws changes nothing.
 */
function settleUnfinishedWork(run, status) {
  try {
    if (run.endedWithUnfinishedWork) return
    const openPlan = planHasOpenTask(run) && !workProvenDone(run, status)
    if (run.truncatedMidTurn || openPlan || mediaWorkUnfinished(run)) run.endedWithUnfinishedWork = true
  } catch {
    // The host's own getters: the flag stays as it was.
  }
}

module.exports = { settleUnfinishedWork, rendersQuestionForm }
