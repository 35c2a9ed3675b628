'use strict'
// LC-7: the run's process tree is captured while the child lives, so the facade must see the
// host's writes of `run.child` and `run.processGroupId`. Both are accessors on the run prototype
// (RUN-1 still holds: `'child' in run`, reads and writes work, the host's own fields spread as
// before); the value lives in the run's private state, and a write that carries a numeric pid or
// group makes one native call, runAttach, which captures the child (only a live direct child of
// this process), verifies the group (IMP-5) and captures the tree (crates/core/src/tree). While
// any run holds a live tree, the service's watch captures again every TREE_WATCH_MS.

const native = require('./core.js')

// exited(child) is status.js's (SPEC §0); status.js requires run.js, which requires this file,
// so it is looked up on first use.
let exitedRule = null
function exited(child) {
  exitedRule ??= require('./status.js').exited
  return exitedRule(child)
}

// After a write of either field: the child's pid and the group as numbers (NaN when absent).
function attach(s) {
  const child = s.child
  let pid = NaN
  let alive = false
  if (child) {
    try {
      if (typeof child.pid === 'number') pid = child.pid
      alive = !exited(child)
    } catch {
      // A child whose getters throw has no pid we could trust.
      pid = NaN
    }
  }
  const group = typeof s.processGroupId === 'number' ? s.processGroupId : NaN
  if (Number.isNaN(pid) && Number.isNaN(group)) return
  if (native.runAttach(s.ctx.svc, s.slot, pid, group, alive)) watchTrees(s.ctx)
}

// LC-7: how often the service captures the trees of its runs between the steps, so that a
// descendant is known while its parent lives (see captureTrees). One unref'd timer per service,
// only while some run holds a live tree.
const TREE_WATCH_MS = 1000

function watchTrees(ctx) {
  if (ctx.treeWatch !== null) return
  // The timer holds the service weakly (its WeakRef, as the eviction timers do): a service the
  // host let go of is collected (TMR-3) even while a child of one of its runs lives on.
  ctx.treeWatch = setInterval(watchTick, TREE_WATCH_MS, ctx.selfRef)
  ctx.treeWatch.unref()
}

// A timer callback must never throw (it would be the daemon's uncaught exception): a failing
// capture stops the watch; the next attach starts it again. (`this` is the interval's Timeout.)
function watchTick(ref) {
  const ctx = ref.deref()
  if (ctx === undefined) {
    clearInterval(this)
    return
  }
  let watched = 0
  try {
    watched = native.captureTrees(ctx.svc)
  } catch {
    watched = 0
  }
  if (watched === 0) {
    clearInterval(ctx.treeWatch)
    ctx.treeWatch = null
  }
}

/**
 * Defines `child` and `processGroupId` on the run prototype; `stateOf(run)` is its state
 * (undefined for an object that is not a run: reads give undefined, writes call `notARun`).
 */
function defineProcessFields(proto, stateOf, notARun) {
  for (const field of ['child', 'processGroupId']) {
    Object.defineProperty(proto, field, {
      configurable: true,
      enumerable: false,
      get() {
        return stateOf(this)?.[field]
      },
      set(value) {
        const s = stateOf(this) ?? notARun(field)
        s[field] = value
        attach(s)
      },
    })
  }
}

module.exports = { defineProcessFields }
