//! Shared helpers of the pipeline tests.
#![allow(dead_code, unreachable_pub)]

pub mod sim;
