//! Tests that need the crate's internals: published known answers through the internal
//! primitives, the construction against an independent implementation, rotation and the
//! cache. The public API's properties are in `tests/`.

mod construction;
mod kat;
