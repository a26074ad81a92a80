//! In-process parse + evaluate of a realistic containerd spec (issue 5). Filled in next.
fn main() {}
