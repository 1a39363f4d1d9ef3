//! (crate doc pending)
