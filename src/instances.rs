//! The services of one Node environment, kept in napi instance data, never in a Rust
//! `static`: worker threads and vitest forks each load the addon into their own environment.

use chat_run_core::{Service, ServiceTable};
use napi::{Env, Error, Result};

use crate::map_error;

/// What one environment holds.
#[derive(Default)]
pub(crate) struct Instances {
    pub services: ServiceTable,
    /// The buffer `text::JsText::read` copies event data into, reused across calls.
    pub scratch: Vec<u8>,
}

/// This environment's instances, created on first use.
pub(crate) fn instances(env: &Env) -> Result<&'static mut Instances> {
    if let Some(instances) = env.get_instance_data::<Instances>()? {
        return Ok(instances);
    }
    env.set_instance_data(Instances::default(), 0u8, |_ctx| {})?;
    env.get_instance_data::<Instances>()?.ok_or_else(|| {
        Error::from_reason("chat-run-service: could not initialise the addon's instance data")
    })
}

/// Service `svc` of this environment.
pub(crate) fn service(env: &Env, svc: u32) -> Result<&'static mut Service> {
    instances(env)?.services.get_mut(svc).map_err(map_error)
}
