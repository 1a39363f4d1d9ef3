//! (crate doc pending)

pub mod codec;
