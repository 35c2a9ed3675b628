//! Delay rules shared by cancel, shutdown and eviction (SPEC §3, §4): the single home of the
//! Node timer clamp (TMR-1, TMR-2) and of the env-var defaults (ENV). The JS facade reads the
//! env vars with `Number()` and passes the results here; it arms its timers (the TTL eviction)
//! with [`timer_delay_or_none`].

/// Largest delay a Node timer accepts (2^31 - 1 ms).
pub const TIMER_MAX_MS: f64 = 2_147_483_647.0;

/// Default SIGTERM grace of `cancel()` and of the ACP abort wait.
pub const DEFAULT_GRACE_MS: f64 = 3000.0;
/// Default wait after SIGKILL in `cancel()`; `shutdownActive()` always uses it.
pub const FORCE_WAIT_MS: f64 = 500.0;

/// IMP-4: how long the process's `'exit'` waits at most for the log writers to write what was
/// queued (a stuck disk must not hold an exiting process for ever).
pub const EXIT_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// TMR-1 and TMR-2: NaN or < 1 becomes 1, above the timer maximum (Infinity included) is clamped.
pub fn timer_delay(ms: f64) -> f64 {
    if ms.is_nan() || ms < 1.0 {
        1.0
    } else if ms > TIMER_MAX_MS {
        TIMER_MAX_MS
    } else {
        ms
    }
}

/// [`timer_delay`] for a timer that may not be armed at all: `None` for `+Infinity` ("never",
/// e.g. `ttlMs: Infinity`), the clamped delay otherwise.
pub fn timer_delay_or_none(ms: f64) -> Option<f64> {
    (ms != f64::INFINITY).then(|| timer_delay(ms))
}

/// `PI_ABORT_GRACE_MS`, already passed through JS `Number()`: 0 or NaN means 3000.
pub fn abort_grace(parsed: f64) -> f64 {
    if parsed == 0.0 || parsed.is_nan() {
        timer_delay(DEFAULT_GRACE_MS)
    } else {
        timer_delay(parsed)
    }
}

/// `OD_CHAT_RUN_CANCEL_GRACE_MS` (or its fallback): finite and > 0, else 3000.
pub fn cancel_grace(parsed: f64) -> f64 {
    if parsed.is_finite() && parsed > 0.0 {
        timer_delay(parsed)
    } else {
        DEFAULT_GRACE_MS
    }
}

/// `OD_CHAT_RUN_CANCEL_FORCE_WAIT_MS`: finite and > 0, else 500.
pub fn force_wait(parsed: f64) -> f64 {
    if parsed.is_finite() && parsed > 0.0 {
        timer_delay(parsed)
    } else {
        FORCE_WAIT_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmr_1_nan_and_below_one_become_one_ms() {
        assert_eq!(timer_delay(f64::NAN), 1.0);
        assert_eq!(timer_delay(0.0), 1.0);
        assert_eq!(timer_delay(-5.0), 1.0);
        assert_eq!(timer_delay(0.5), 1.0);
        assert_eq!(timer_delay(10.0), 10.0);
    }

    #[test]
    fn tmr_2_large_delays_are_clamped_not_wrapped() {
        assert_eq!(timer_delay(3e9), TIMER_MAX_MS);
        assert_eq!(timer_delay(f64::INFINITY), TIMER_MAX_MS);
    }

    #[test]
    fn an_infinite_delay_is_no_timer_and_others_are_clamped() {
        assert_eq!(timer_delay_or_none(f64::INFINITY), None);
        assert_eq!(timer_delay_or_none(1_800_000.0), Some(1_800_000.0));
        assert_eq!(timer_delay_or_none(0.0), Some(1.0));
        assert_eq!(timer_delay_or_none(f64::NAN), Some(1.0));
        assert_eq!(timer_delay_or_none(f64::NEG_INFINITY), Some(1.0));
        assert_eq!(timer_delay_or_none(1e12), Some(TIMER_MAX_MS));
    }

    #[test]
    fn env_pi_abort_grace_zero_or_nan_is_default_and_negative_is_one_ms() {
        assert_eq!(abort_grace(f64::NAN), 3000.0);
        assert_eq!(abort_grace(0.0), 3000.0);
        assert_eq!(abort_grace(-20.0), 1.0);
        assert_eq!(abort_grace(250.0), 250.0);
    }

    #[test]
    fn env_cancel_grace_and_force_wait_need_finite_positive_values() {
        assert_eq!(cancel_grace(f64::NAN), 3000.0);
        assert_eq!(cancel_grace(0.0), 3000.0);
        assert_eq!(cancel_grace(-1.0), 3000.0);
        assert_eq!(cancel_grace(f64::INFINITY), 3000.0);
        assert_eq!(cancel_grace(40.0), 40.0);
        assert_eq!(force_wait(f64::NAN), 500.0);
        assert_eq!(force_wait(0.25), 1.0);
        assert_eq!(force_wait(70.0), 70.0);
    }
}
