//! Child signalling behind the IMP-5 guard.
//!
//! A signal goes to a process group only when the group id is an integer ≥ 2, is not the
//! daemon's own group, is not the daemon's pid, and is the group the run's own child is in
//! (`getpgid(child.pid) == processGroupId`, checked while the child lives). Otherwise the
//! signal goes to the child's pid (when it is a positive integer), and only with no pid at all
//! does the caller fall back to the JS `child.kill(signal)`.
//!
//! On non-Unix platforms there is no `nix`: every call reports `Delivery::Fallback` and the
//! facade uses `child.kill()`, which Node maps to `TerminateProcess` on Windows.

/// What a signal name or number resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalSpec {
    /// Signal 0: an existence probe.
    Probe,
    Number(i32),
}

/// Where a signal went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `killpg(pgid)` succeeded.
    Group,
    /// The child's pid was signalled (through its pidfd where the kernel has them).
    Pid,
    /// The child's pidfd says it has exited: nothing was sent, and nothing must be (its pid may
    /// already belong to another process).
    Gone,
    /// Nothing was sent: the caller must use `child.kill(signal)`.
    Fallback,
}

/// A handle on one child process that survives pid reuse (Linux `pidfd_open`, kernel ≥ 5.3).
/// Opened while the child is known to be alive; signals sent through it can only ever reach
/// that process, never a later process that was given the same pid.
#[derive(Debug)]
pub struct ChildHandle {
    pub pid: i32,
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl ChildHandle {
    /// Opens a handle on `pid`. Without pidfd support it still records the pid, and signals
    /// fall back to `kill(pid)` (documented residual risk: a pid reused between the child's
    /// exit and Node noticing it).
    pub fn open(pid: i32) -> Self {
        Self {
            pid,
            #[cfg(target_os = "linux")]
            fd: imp::pidfd_open(pid),
        }
    }

    /// True when signals go through a pidfd.
    pub fn has_pidfd(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            self.fd.is_some()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// Sends `signal` to this child only.
    pub fn signal(&self, signal: SignalSpec) -> Delivery {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            return match imp::pidfd_send(fd, signal) {
                Ok(()) => Delivery::Pid,
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Delivery::Gone,
                Err(_) => Delivery::Fallback,
            };
        }
        if signal_pid(self.pid, signal) {
            Delivery::Pid
        } else {
            Delivery::Fallback
        }
    }
}

/// Why a group id was refused (IMP-5). Kept for diagnostics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRefusal {
    NotAnInteger,
    Reserved,
    OwnGroup,
    OwnPid,
    NoChildPid,
    ChildNotInGroup,
    /// The child is in the group but does not lead it: it joined a group another process made,
    /// whose other members are not the run's (SIG-6).
    JoinedGroup,
}

/// Parses a Node signal argument: a name such as `"SIGTERM"` or a number.
pub fn parse_signal_name(name: &str) -> Option<SignalSpec> {
    imp::parse_name(name)
}

/// Validates a signal number (0 is the probe).
pub fn parse_signal_number(number: f64) -> Option<SignalSpec> {
    if number.fract() != 0.0 || !(0.0..=64.0).contains(&number) {
        return None;
    }
    let n = number as i32;
    if n == 0 {
        Some(SignalSpec::Probe)
    } else {
        imp::valid_number(n).then_some(SignalSpec::Number(n))
    }
}

/// A pid as JS gave it: a positive integer that fits `pid_t`, or nothing.
pub fn as_pid(value: f64) -> Option<i32> {
    if value.fract() == 0.0 && value >= 1.0 && value <= f64::from(i32::MAX) {
        Some(value as i32)
    } else {
        None
    }
}

/// IMP-5: returns the group id when it is safe to signal for this child: the child's own
/// group, the one it leads (a child spawned `detached` makes it, `processGroupId` = its pid).
pub fn verify_group(pgid: f64, child_pid: Option<i32>) -> Result<i32, GroupRefusal> {
    let pgid = check_group_id(pgid)?;
    let pid = child_pid.ok_or(GroupRefusal::NoChildPid)?;
    match imp::group_of(pid) {
        Some(actual) if actual == pgid && pgid == pid => Ok(pgid),
        Some(actual) if actual == pgid => Err(GroupRefusal::JoinedGroup),
        _ => Err(GroupRefusal::ChildNotInGroup),
    }
}

/// IMP-5's rules on the id alone: an integer from 2 to `i32::MAX` that is neither the daemon's
/// own group nor its pid. Whose group it is remains for the caller to establish.
pub fn check_group_id(pgid: f64) -> Result<i32, GroupRefusal> {
    if !(pgid.fract() == 0.0 && pgid.is_finite()) {
        return Err(GroupRefusal::NotAnInteger);
    }
    if pgid < 2.0 || pgid > f64::from(i32::MAX) {
        return Err(GroupRefusal::Reserved);
    }
    let pgid = pgid as i32;
    if Some(pgid) == imp::own_group() {
        return Err(GroupRefusal::OwnGroup);
    }
    if u32::try_from(pgid).ok() == Some(std::process::id()) {
        return Err(GroupRefusal::OwnPid);
    }
    Ok(pgid)
}

/// `signalChildProcess` (an explicit child and group, no run): `signal` to the group when
/// the child is this process's own (not reaped yet, so its pid is still its) and IMP-5
/// verifies the group is that child's; false when nothing was sent, and the facade then uses
/// `child.kill(signal)`.
pub fn signal_child_group(child_pid: f64, group: f64, signal: SignalSpec) -> bool {
    let Some(pid) = as_pid(child_pid) else {
        return false;
    };
    crate::tree::is_own_child(&crate::tree::System, pid)
        && verify_group(group, Some(pid)).is_ok_and(|pgid| signal_group(pgid, signal))
}

/// Sends `signal` to an already verified group.
pub fn signal_group(pgid: i32, signal: SignalSpec) -> bool {
    pgid >= 2 && imp::killpg(pgid, signal)
}

/// Sends `signal` to one pid (never 0, 1, negative, or the daemon itself).
pub fn signal_pid(pid: i32, signal: SignalSpec) -> bool {
    pid >= 2 && u32::try_from(pid).ok() != Some(std::process::id()) && imp::kill(pid, signal)
}

#[cfg(unix)]
mod imp {
    use super::SignalSpec;
    use nix::sys::signal::{self, Signal};
    use nix::unistd::{self, Pid};
    use std::str::FromStr;

    pub fn parse_name(name: &str) -> Option<SignalSpec> {
        Signal::from_str(name)
            .ok()
            .map(|s| SignalSpec::Number(s as i32))
    }

    pub fn valid_number(n: i32) -> bool {
        Signal::try_from(n).is_ok()
    }

    fn to_signal(spec: SignalSpec) -> Option<Option<Signal>> {
        match spec {
            SignalSpec::Probe => Some(None),
            SignalSpec::Number(n) => Signal::try_from(n).ok().map(Some),
        }
    }

    pub fn own_group() -> Option<i32> {
        Some(unistd::getpgrp().as_raw())
    }

    pub fn group_of(pid: i32) -> Option<i32> {
        unistd::getpgid(Some(Pid::from_raw(pid)))
            .ok()
            .map(Pid::as_raw)
    }

    pub fn killpg(pgid: i32, spec: SignalSpec) -> bool {
        match to_signal(spec) {
            // kill(-pgid, sig) == killpg(pgid, sig); pgid >= 2 is checked by the caller.
            Some(sig) => signal::kill(Pid::from_raw(-pgid), sig).is_ok(),
            None => false,
        }
    }

    pub fn kill(pid: i32, spec: SignalSpec) -> bool {
        match to_signal(spec) {
            Some(sig) => signal::kill(Pid::from_raw(pid), sig).is_ok(),
            None => false,
        }
    }

    #[cfg(target_os = "linux")]
    pub fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
        if pid < 2 {
            return None;
        }
        crate::tree::pidfd_open(pid)
    }

    #[cfg(target_os = "linux")]
    pub fn pidfd_send(fd: &std::os::fd::OwnedFd, spec: SignalSpec) -> std::io::Result<()> {
        let sig = match spec {
            SignalSpec::Probe => 0,
            SignalSpec::Number(n) => n,
        };
        crate::tree::pidfd_send(fd, sig)
    }
}

#[cfg(not(unix))]
mod imp {
    use super::SignalSpec;

    pub fn parse_name(_name: &str) -> Option<SignalSpec> {
        None
    }
    pub fn valid_number(_n: i32) -> bool {
        false
    }
    pub fn own_group() -> Option<i32> {
        None
    }
    pub fn group_of(_pid: i32) -> Option<i32> {
        None
    }
    pub fn killpg(_pgid: i32, _spec: SignalSpec) -> bool {
        false
    }
    pub fn kill(_pid: i32, _spec: SignalSpec) -> bool {
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    fn spawn_group_leader() -> Child {
        let mut cmd = Command::new("sleep");
        cmd.arg("30").process_group(0);
        cmd.spawn().unwrap()
    }

    #[test]
    fn signal_names_and_numbers_parse_like_node() {
        assert_eq!(parse_signal_name("SIGTERM"), Some(SignalSpec::Number(15)));
        assert_eq!(parse_signal_name("SIGKILL"), Some(SignalSpec::Number(9)));
        assert_eq!(parse_signal_name("TERM"), None);
        assert_eq!(parse_signal_name("SIGNOPE"), None);
        assert_eq!(parse_signal_number(0.0), Some(SignalSpec::Probe));
        assert_eq!(parse_signal_number(9.0), Some(SignalSpec::Number(9)));
        assert_eq!(parse_signal_number(9.5), None);
        assert_eq!(parse_signal_number(-9.0), None);
        assert_eq!(parse_signal_number(f64::NAN), None);
    }

    #[test]
    fn imp_5_refuses_reserved_own_and_foreign_groups() {
        let own_pid = std::process::id() as i32;
        assert_eq!(
            verify_group(f64::NAN, Some(own_pid)),
            Err(GroupRefusal::NotAnInteger)
        );
        assert_eq!(
            verify_group(2.5, Some(own_pid)),
            Err(GroupRefusal::NotAnInteger)
        );
        assert_eq!(
            verify_group(0.0, Some(own_pid)),
            Err(GroupRefusal::Reserved)
        );
        assert_eq!(
            verify_group(1.0, Some(own_pid)),
            Err(GroupRefusal::Reserved)
        );
        assert_eq!(
            verify_group(-1.0, Some(own_pid)),
            Err(GroupRefusal::Reserved)
        );
        assert_eq!(
            verify_group(-5000.0, Some(own_pid)),
            Err(GroupRefusal::Reserved)
        );
        let own_group = nix::unistd::getpgrp().as_raw();
        assert_eq!(
            verify_group(f64::from(own_group), Some(own_pid)),
            Err(GroupRefusal::OwnGroup)
        );
        let mut child = spawn_group_leader();
        let pid = child.id() as i32;
        // The child's own group is accepted, without a pid it is refused.
        assert_eq!(verify_group(f64::from(pid), Some(pid)), Ok(pid));
        assert_eq!(
            verify_group(f64::from(pid), None),
            Err(GroupRefusal::NoChildPid)
        );
        // A group the child is not in is refused.
        let mut other = spawn_group_leader();
        let other_pid = other.id() as i32;
        assert_eq!(
            verify_group(f64::from(other_pid), Some(pid)),
            Err(GroupRefusal::ChildNotInGroup)
        );
        // A child that joined another process's group (same session) is in it, but the group
        // is not the child's: refused.
        let mut joined = Command::new("sleep")
            .arg("30")
            .process_group(other_pid)
            .spawn()
            .unwrap();
        let joined_pid = joined.id() as i32;
        assert_eq!(
            verify_group(f64::from(other_pid), Some(joined_pid)),
            Err(GroupRefusal::JoinedGroup)
        );
        assert!(signal_pid(joined_pid, SignalSpec::Number(9)));
        let _ = joined.wait();
        assert!(signal_group(pid, SignalSpec::Number(9)));
        assert!(signal_pid(other_pid, SignalSpec::Number(9)));
        let _ = child.wait();
        let _ = other.wait();
        // After exit and reap, the group no longer verifies.
        assert_eq!(
            verify_group(f64::from(pid), Some(pid)),
            Err(GroupRefusal::ChildNotInGroup)
        );
    }

    #[test]
    fn child_handle_signals_only_its_own_process_and_reports_gone_after_exit() {
        let mut child = spawn_group_leader();
        let pid = child.id() as i32;
        let handle = ChildHandle::open(pid);
        #[cfg(target_os = "linux")]
        assert!(handle.has_pidfd(), "this kernel should support pidfd_open");
        assert_eq!(handle.signal(SignalSpec::Probe), Delivery::Pid);
        assert_eq!(handle.signal(SignalSpec::Number(9)), Delivery::Pid);
        let _ = child.wait();
        // Reaped: the pid may be reused by anyone now; the handle refuses to signal.
        if handle.has_pidfd() {
            assert_eq!(handle.signal(SignalSpec::Number(9)), Delivery::Gone);
        }
    }

    #[test]
    fn only_a_child_of_this_process_or_its_group_is_signalled_for_a_host_pid() {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        // A group leader that started a grandchild of this process, in its group.
        let mut leader = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let leader_pid = leader.id() as i32;
        let mut line = String::new();
        BufReader::new(leader.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let table = crate::tree::System;
        assert!(crate::tree::is_own_child(&table, leader_pid));
        assert!(!crate::tree::is_own_child(&table, grandchild));
        assert!(!crate::tree::is_own_child(
            &table,
            std::process::id() as i32
        ));
        assert!(!crate::tree::is_own_child(&table, 1));
        // The grandchild is in the leader's group, but is not this process's child: nothing.
        assert!(!signal_child_group(
            f64::from(grandchild),
            f64::from(leader_pid),
            SignalSpec::Probe
        ));
        assert!(signal_child_group(
            f64::from(leader_pid),
            f64::from(leader_pid),
            SignalSpec::Probe
        ));
        assert!(signal_group(leader_pid, SignalSpec::Number(9)));
        let _ = leader.wait();
    }

    #[test]
    fn signal_pid_never_targets_init_or_self() {
        assert!(!signal_pid(1, SignalSpec::Probe));
        assert!(!signal_pid(0, SignalSpec::Probe));
        assert!(!signal_pid(-1, SignalSpec::Probe));
        assert!(!signal_pid(std::process::id() as i32, SignalSpec::Probe));
        assert!(!signal_group(1, SignalSpec::Probe));
        assert!(!signal_group(0, SignalSpec::Probe));
        assert_eq!(as_pid(0.0), None);
        assert_eq!(as_pid(-3.0), None);
        assert_eq!(as_pid(1.5), None);
        assert_eq!(as_pid(42.0), Some(42));
    }
}
