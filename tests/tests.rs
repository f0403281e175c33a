//! Integration tests, built as one binary so link time stays flat as they grow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod at_rest;
mod daemon;
mod storage_crash;
mod support;
