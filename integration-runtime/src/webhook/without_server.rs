//! Verifying webhook signatures. The receiver needs feature `server`.

pub mod signature;
