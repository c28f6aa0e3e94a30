//! System components (WASI, logging, key-value) that link native Rust into a guest. Filled by issue 5.
