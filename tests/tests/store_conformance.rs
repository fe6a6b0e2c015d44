//! The store conformance suite run from outside the runtime's crate, as a
//! store written elsewhere runs it: the macro and its checks must be usable
//! through the public API (feature `testing`) alone.

use integration_runtime::MemoryStore;

integration_runtime::store_conformance_tests!(|| async { MemoryStore::new() });
