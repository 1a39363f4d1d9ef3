//! Shared helpers for the integration tests: locating the built `net-mesh` binary.
