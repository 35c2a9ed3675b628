//! Strings across the boundary without extra copies: [`JsText`] reads the hot `emit` data
//! argument straight into a reused buffer, and [`js_text`] hands large ASCII texts to V8 as
//! Latin-1.

use chat_run_core::{CoreError, CoreResult};
use napi::bindgen_prelude::{FromNapiValue, Result, TypeName, ValidateNapiValue, ValueType};
use napi::{sys, Env, Error, JsString};

/// Initial size of the reused buffer.
const SCRATCH_BYTES: usize = 16 * 1024;
/// A buffer grown by a larger text is kept up to this size, so a run of large events is read
/// with one call each; beyond it, it goes back to `SCRATCH_BYTES` on the next read.
const SCRATCH_MAX_KEPT: usize = 1024 * 1024;

/// A JS string argument, read later with [`JsText::read`].
pub struct JsText {
    env: sys::napi_env,
    value: sys::napi_value,
}

impl TypeName for JsText {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for JsText {}

impl FromNapiValue for JsText {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        Ok(Self { env, value })
    }
}

impl JsText {
    /// One `napi_get_value_string_utf8`: the text into `buffer` (as much as fits, then a
    /// NUL), or with `None` only its length. Sets `written` to the bytes written (or needed).
    fn copy_into(&self, buffer: Option<&mut [u8]>, written: &mut usize) -> bool {
        let (pointer, len) = match buffer {
            Some(buffer) => (buffer.as_mut_ptr().cast(), buffer.len()),
            None => (std::ptr::null_mut(), 0),
        };
        // SAFETY: `env`/`value` came from napi for this call's argument and are used within
        // the call; `pointer`/`len` describe a buffer borrowed mutably for this call (or are
        // null/0, which asks only for the length), and napi writes at most `len` bytes into it.
        let status =
            unsafe { sys::napi_get_value_string_utf8(self.env, self.value, pointer, len, written) };
        status == sys::Status::napi_ok
    }

    /// The string's UTF-8 text, in `scratch`.
    pub fn read<'a>(&self, scratch: &'a mut Vec<u8>) -> CoreResult<&'a str> {
        if scratch.len() < SCRATCH_BYTES || scratch.len() > SCRATCH_MAX_KEPT {
            // First use, or grown past what is worth keeping by a very large text.
            scratch.resize(SCRATCH_BYTES, 0);
            scratch.shrink_to(SCRATCH_BYTES);
        }
        let mut written = 0usize;
        if !self.copy_into(Some(scratch), &mut written) {
            return Err(CoreError::EventDataNotText);
        }
        // napi writes whole characters only, into at most `len - 1` bytes: a text that did not
        // fit stops less than one 4-byte character short of that. Only then size it and
        // read it again.
        if written + 4 >= scratch.len() {
            let mut needed = 0usize;
            if !self.copy_into(None, &mut needed) {
                return Err(CoreError::EventDataNotText);
            }
            scratch.resize(needed + 1, 0);
            if !self.copy_into(Some(scratch), &mut written) {
                return Err(CoreError::EventDataNotText);
            }
        }
        std::str::from_utf8(&scratch[..written]).map_err(CoreError::EventDataNotUtf8)
    }
}

/// The size of each text when a read is handed over in several: below V8's longest string
/// (2^29 - 24 characters, never more than the UTF-8 bytes that make them), a few per GB.
pub const CHUNK_BYTES: usize = 1 << 28;

/// [`js_text`] for each of `texts`.
pub fn js_texts<'env>(env: &'env Env, texts: &[String], what: &str) -> Result<Vec<JsString<'env>>> {
    texts.iter().map(|text| js_text(env, text, what)).collect()
}

/// A large text for JS. ASCII (the usual case: `JSON.stringify` output of ASCII content) goes
/// in as Latin-1, which V8 copies as is, instead of UTF-8, which it decodes byte by byte.
/// `what` names the read in the error of a text no JS string can hold.
pub fn js_text<'env>(env: &'env Env, text: &str, what: &str) -> Result<JsString<'env>> {
    let made = if text.is_ascii() {
        env.create_string_latin1(text.as_bytes())
    } else {
        env.create_string(text)
    };
    made.map_err(|error| {
        Error::new(
            error.status,
            format!(
                "chat-run-service: {what}: a text of {} bytes of the run's records, more than one JS string can hold \
                 (V8's longest string: 2^29 - 24 characters): a record read back from a log larger than any emit makes",
                text.len()
            ),
        )
    })
}
