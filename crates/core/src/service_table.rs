//! The services of one host environment (one Node environment: the main thread, a worker, a
//! vitest fork), addressed by `u32` ids.
//!
//! Ids are never reused: a run's finalizer may fire after its service was destroyed, and must
//! not reach a newer service by accident. A destroyed service leaves an empty entry behind
//! (one pointer), which is the price of that rule.

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::service;

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
}
