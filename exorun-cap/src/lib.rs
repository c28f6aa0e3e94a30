#![doc = include_str!("../README.md")]
#![no_std]

extern crate alloc;

pub mod format;
pub mod verify;

pub use format::Capability;
pub use format::Link;
pub use format::Right;
pub use verify::Denial;
pub use verify::Grant;
pub use verify::Request;
