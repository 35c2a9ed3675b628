//! The services of one host environment (one Node environment: the main thread, a worker, a
//! vitest fork), addressed by `u32` ids.
//!
//! Ids are never reused: a run's finalizer may fire after its service was destroyed, and must
//! not reach a newer service by accident. A destroyed service leaves an empty entry behind
//! (one pointer), which is the price of that rule.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::error::{CoreError, CoreResult};
use crate::service::Service;

#[derive(Default)]
pub struct ServiceTable {
    services: Vec<Option<Box<Service>>>,
}

impl ServiceTable {
    /// Adds a service and returns its id.
    pub fn insert(&mut self, service: Service) -> CoreResult<u32> {
        let id = u32::try_from(self.services.len()).map_err(|_| CoreError::TooManyServices)?;
        self.services.push(Some(Box::new(service)));
        Ok(id)
    }

    /// The service with this id, unless it was destroyed or never existed.
    pub fn get_mut(&mut self, id: u32) -> CoreResult<&mut Service> {
        self.services
            .get_mut(id as usize)
            .and_then(Option::as_deref_mut)
            .ok_or(CoreError::UnknownService(id))
    }

    /// Frees a service (its log writer drains and stops). Unknown ids are ignored.
    pub fn remove(&mut self, id: u32) {
        if let Some(entry) = self.services.get_mut(id as usize) {
            *entry = None;
        }
    }

    /// LC-7 at the process's end: every service's begun teardowns take their SIGKILL step
    /// ([`Service::kill_unfinished_teardowns`]). Returns how many runs were signalled.
    pub fn kill_unfinished_teardowns(&mut self) -> usize {
        self.services
            .iter_mut()
            .flatten()
            .map(|service| service.kill_unfinished_teardowns())
            .sum()
    }

    /// IMP-4 at the process's end: waits until every live service's log writer has written
    /// and closed what was queued before the call, or until `timeout` has passed. Returns
    /// false only on the timeout. A writer that is gone (its thread ended) has nothing left to
    /// write and counts as done.
    pub fn flush_all_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, finished) = mpsc::channel::<()>();
        let mut pending = 0usize;
        for service in self.services.iter().flatten() {
            let done = done.clone();
            service.flush(Box::new(move || {
                let _ = done.send(());
            }));
            pending += 1;
        }
        drop(done);
        while pending > 0 {
            match finished.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(()) => pending -= 1,
                Err(RecvTimeoutError::Timeout) => return false,
                // Every barrier left is dropped unrun: its writer is gone.
                Err(RecvTimeoutError::Disconnected) => return true,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::CreateMeta;
    use crate::test_support::{log_dir, service};

    #[test]
    fn destroyed_service_ids_are_never_handed_out_again() {
        let mut table = ServiceTable::default();
        let first = table.insert(service(Some(1), None)).unwrap();
        table.remove(first);
        assert_eq!(
            table.get_mut(first).err(),
            Some(CoreError::UnknownService(first))
        );
        let second = table.insert(service(Some(1), None)).unwrap();
        assert_ne!(first, second);
        assert!(table.get_mut(second).is_ok());
        assert_eq!(table.get_mut(99).err(), Some(CoreError::UnknownService(99)));
        table.remove(99);
    }

    #[test]
    fn imp_4_flush_all_blocking_returns_once_every_writer_wrote_its_queue() {
        const LINES: usize = 50_000;
        let (dir_a, layout_a) = log_dir("flush-all-a");
        let (dir_b, layout_b) = log_dir("flush-all-b");
        let mut table = ServiceTable::default();
        let quiet = table.insert(service(Some(10), None)).unwrap();
        let a = table.insert(service(None, Some(layout_a))).unwrap();
        let b = table.insert(service(None, Some(layout_b))).unwrap();
        let gone = table.insert(service(None, None)).unwrap();
        table.remove(gone);
        let mut expect = Vec::new();
        for (id, dir) in [(a, &dir_a), (b, &dir_b)] {
            let svc = table.get_mut(id).unwrap();
            let run = svc.create(CreateMeta::default(), 0.0);
            // One staged batch of many lines: it reaches the writer at once, so the writer is
            // still busy with it when emit_staged returns.
            let name = f64::from(svc.intern_event("stdout"));
            let (mut header, mut text) = (Vec::new(), String::new());
            let pad = "x".repeat(200);
            for i in 1..=LINES {
                header.extend([f64::from(run.slot), i as f64, name, 3.0, 1.0]);
                text.push_str(&format!("{{\"i\":{i},\"pad\":\"{pad}\"}}\n"));
            }
            assert_eq!(svc.emit_staged(&header, &text).unwrap(), LINES);
            expect.push(dir.join(&run.id).join("events.jsonl"));
        }
        assert!(table.get_mut(quiet).is_ok());
        assert!(table.flush_all_blocking(Duration::from_secs(10)));
        for path in expect {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), LINES, "{}", path.display());
        }
        let _ = std::fs::remove_dir_all(dir_a);
        let _ = std::fs::remove_dir_all(dir_b);
    }

    #[test]
    fn imp_4_flush_all_blocking_with_no_service_returns_at_once() {
        let table = ServiceTable::default();
        assert!(table.flush_all_blocking(Duration::ZERO));
    }
}
