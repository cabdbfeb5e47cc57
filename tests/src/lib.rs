//! Integration test support.
#![forbid(unsafe_code)]
