//! Running a program the tests depend on (the workspace's command-line tools, an independent
//! client in Python) to its end.

use std::process::Command;

/// Runs `command` to its end and returns what it printed on stdout; fails with its stderr when it
/// does not succeed.
pub fn stdout_of(command: &mut Command) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{program} printed non-UTF-8: {e}"))
}
