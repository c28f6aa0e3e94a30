//! The binder: system, local and remote links, the instance builder, and serving exports to remote callers. Filled by issue 6.
