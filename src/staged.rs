//! The batch of staged emits (BND-6): the facade's one call per batch instead of one per
//! `emit`. The header is read in place from the `Float64Array` the facade reuses, and the text
//! is copied once, into the reused buffer; the core reads the format (`chat_run_core::batch`).

use napi::bindgen_prelude::Float64ArraySlice;
use napi::{Env, Error, Result, Status};
use napi_derive::napi;

use crate::instances::instances;
use crate::map_error;
use crate::text::JsText;

/// Stores the first `count` records of a batch of staged emits, in order: `header` holds five
/// numbers per record (slot, id, event name, flags, timestamp) and `text` the records' event
/// and data JSON parts, each followed by a line feed (see the core's `batch` module). Returns
/// how many records were stored.
#[napi]
pub fn emit_staged(
    env: &Env,
    svc: u32,
    count: u32,
    header: Float64ArraySlice,
    #[napi(ts_arg_type = "string")] text: JsText,
) -> Result<u32> {
    let instances = instances(env)?;
    let service = instances.services.get_mut(svc).map_err(map_error)?;
    let text = text.read(&mut instances.scratch).map_err(map_error)?;
    let fields = (count as usize).saturating_mul(chat_run_core::batch::FIELDS_PER_RECORD);
    let header = header.get(..fields).ok_or_else(|| {
        Error::new(
            Status::InvalidArg,
            format!(
                "chat-run-service: emitStaged: {count} records need {fields} header numbers, the header holds {}",
                header.len()
            ),
        )
    })?;
    service
        .emit_staged(header, text)
        .map(|stored| stored as u32)
        .map_err(map_error)
}
