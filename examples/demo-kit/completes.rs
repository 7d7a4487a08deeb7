//! The check of every Rust demo's test: the demo binary runs to the end
//! against the real broker and tells each of the expected steps. Included by
//! the demos' `tests/demo.rs` as their `completes` module.

use std::process::Command;

/// Run the demo binary `bin`; it must succeed and print every one of `steps`.
pub fn assert_completes(bin: &str, steps: &[&str]) {
    let out = Command::new(bin).output().expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in steps {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
}
