//! Whole-process, runc and audit targets of issue 5. Filled in next.
fn main() {}
