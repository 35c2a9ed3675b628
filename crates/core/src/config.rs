//! Construction options of a service (OPT-*) and the single home of their defaults.
//!
//! The JS facade validates what the host passed (it must throw the SPEC's `TypeError` /
//! `RangeError` with JS wording) and fills what is missing from [`ServiceDefaults`], which it
//! reads once at module load; it does not spell the numbers out itself.

use serde::Serialize;

use crate::error::CoreResult;
use crate::log_writer::LogLimits;
use crate::timing;

/// `maxEvents` when the option is absent.
pub const DEFAULT_MAX_EVENTS: usize = 2000;
/// `ttlMs` when the option is absent: how long a terminal run stays registered (FIN-5).
pub const DEFAULT_TTL_MS: f64 = 1_800_000.0;
/// `shutdownGraceMs` when the option is absent (SHD-4).
pub const DEFAULT_SHUTDOWN_GRACE_MS: f64 = 3000.0;

/// How many `stream()` subscribers a run keeps when `OD_CHAT_RUN_MAX_STREAM_CLIENTS` does not
/// say (SPEC STR-9).
pub const DEFAULT_STREAM_CLIENT_CAP: u32 = 8;

/// STR-9: the per-run subscriber cap from `OD_CHAT_RUN_MAX_STREAM_CLIENTS`, already passed
/// through JS `Number()`: a finite value of at least 1, rounded down (at most `u32::MAX`), else
/// [`DEFAULT_STREAM_CLIENT_CAP`].
pub fn stream_client_cap(parsed: f64) -> u32 {
    if parsed.is_finite() && parsed >= 1.0 {
        // (`as` saturates: a value above u32::MAX is u32::MAX, which no run reaches.)
        parsed.floor() as u32
    } else {
        DEFAULT_STREAM_CLIENT_CAP
    }
}

/// How `<runsLogDir>/<id>/events.jsonl` is built: `prefix + id + suffix`, both parts computed
/// once by Node's `path.join` so the result is normalized exactly as CRE-4 asks.
#[derive(Clone, Debug)]
pub struct LogLayout {
    pub prefix: String,
    pub suffix: String,
}

impl LogLayout {
    /// The log path of run `id`.
    pub fn path_of(&self, id: &str) -> String {
        let mut path = String::with_capacity(self.prefix.len() + id.len() + self.suffix.len());
        path.push_str(&self.prefix);
        path.push_str(id);
        path.push_str(&self.suffix);
        path
    }
}

/// Construction options, already validated by the facade (OPT-2).
pub struct ServiceConfig {
    /// `None` = unbounded (`maxEvents: Infinity`).
    pub max_events: Option<usize>,
    /// `None` = logging off (no filesystem access at all).
    pub log: Option<LogLayout>,
    pub log_limits: LogLimits,
}

impl ServiceConfig {
    /// `maxEvents` as JS passes it: an integer ≥ 1, or anything else (`Infinity`) for
    /// unbounded.
    pub fn max_events_from_js(max_events: f64) -> Option<usize> {
        (max_events.is_finite() && max_events >= 1.0).then_some(max_events as usize)
    }
}

/// The option defaults and the timer maximum, as `serviceDefaults()` hands them to JS:
/// `{"maxEvents":2000,"ttlMs":1800000,"shutdownGraceMs":3000,"maxTimerDelayMs":2147483647}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDefaults {
    pub max_events: u64,
    pub ttl_ms: u64,
    pub shutdown_grace_ms: u64,
    /// The largest delay a Node timer accepts (TMR-2).
    pub max_timer_delay_ms: u64,
}

impl ServiceDefaults {
    pub const VALUES: ServiceDefaults = ServiceDefaults {
        max_events: DEFAULT_MAX_EVENTS as u64,
        ttl_ms: DEFAULT_TTL_MS as u64,
        shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS as u64,
        max_timer_delay_ms: timing::TIMER_MAX_MS as u64,
    };

    pub fn to_json(&self) -> CoreResult<String> {
        Ok(serde_json::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_defaults_cross_to_js_as_one_json_object() {
        assert_eq!(
            ServiceDefaults::VALUES.to_json().unwrap(),
            r#"{"maxEvents":2000,"ttlMs":1800000,"shutdownGraceMs":3000,"maxTimerDelayMs":2147483647}"#
        );
    }

    #[test]
    fn str_9_client_cap_takes_a_positive_count_else_eight() {
        assert_eq!(stream_client_cap(2.0), 2);
        assert_eq!(stream_client_cap(2.9), 2);
        assert_eq!(stream_client_cap(1.0), 1);
        for bad in [0.0, 0.5, -3.0, f64::NAN, f64::INFINITY] {
            assert_eq!(stream_client_cap(bad), DEFAULT_STREAM_CLIENT_CAP, "{bad}");
        }
        assert_eq!(stream_client_cap(1e12), u32::MAX);
    }

    #[test]
    fn max_events_infinity_is_unbounded() {
        assert_eq!(ServiceConfig::max_events_from_js(2000.0), Some(2000));
        assert_eq!(ServiceConfig::max_events_from_js(f64::INFINITY), None);
    }

    #[test]
    fn cre_4_log_path_is_prefix_id_suffix() {
        let layout = LogLayout {
            prefix: "/tmp/logs/".into(),
            suffix: "/events.jsonl".into(),
        };
        assert_eq!(layout.path_of("abc"), "/tmp/logs/abc/events.jsonl");
    }
}
