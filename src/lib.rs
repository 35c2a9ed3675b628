//! Native core of the open-design daemon's chat-run service.
//!
//! [`core`] is plain Rust (tested with `cargo test`, no Node needed); [`binding`] is the thin
//! napi-rs layer the JS facade (`index.js`) calls.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod binding;
pub mod core;
