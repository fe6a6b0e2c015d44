//! Workspace-level tests live in `tests/tests/`. This library compiles the
//! committed snapshots of generated code, so a snapshot that would not
//! compile fails the build.

#![allow(missing_docs)]

#[rustfmt::skip] // prettyplease output, compared byte for byte
#[path = "../snapshots/crm.rs"]
pub mod crm_snapshot;
#[rustfmt::skip] // prettyplease output, compared byte for byte
#[path = "../snapshots/job_runner.rs"]
pub mod job_runner_snapshot;
#[rustfmt::skip] // prettyplease output, compared byte for byte
#[path = "../snapshots/payments.rs"]
pub mod payments_snapshot;
#[rustfmt::skip] // prettyplease output, compared byte for byte
#[path = "../snapshots/translate.rs"]
pub mod translate_snapshot;
#[rustfmt::skip] // prettyplease output, compared byte for byte
#[path = "../snapshots/volc_tts.rs"]
pub mod volc_tts_snapshot;
