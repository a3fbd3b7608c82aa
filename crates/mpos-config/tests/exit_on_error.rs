//! `exit_on_error` and `Vars::from_env`, checked in a child process started with its own
//! environment (the test process's environment is never changed).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

use mpos_config::{EXIT_CONFIG, Vars, exit_on_error};

/// Set only in the child process.
const CHILD: &str = "MPOS_CONFIG_TEST_CHILD";

/// In the child: read `MPOS_TEST_*` and exit like a binary would. In the parent: nothing.
#[test]
fn child_entry_point() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let vars = Vars::from_env();
    let token = exit_on_error(vars.secret("MPOS_TEST_TOKEN", 32));
    let name = exit_on_error(vars.string("MPOS_TEST_NAME", None, "a name"));
    drop(token);
    println!("started as {name}");
    std::process::exit(0);
}

fn run_child(envs: &[(&str, &OsStr)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "child_entry_point",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("MPOS_TEST_TOKEN")
        .env_remove("MPOS_TEST_NAME")
        .env(CHILD, "1");
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().expect("run child")
}

#[test]
fn a_short_secret_exits_78_with_one_line_and_no_value() {
    let output = run_child(&[
        ("MPOS_TEST_TOKEN", OsStr::new("too-short-secret")),
        ("MPOS_TEST_NAME", OsStr::new("tms")),
    ]);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MPOS_TEST_TOKEN: expected at least 32 characters (value hidden)\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short-secret"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("too-short-secret"));
}

#[test]
fn a_missing_value_exits_78() {
    let output = run_child(&[(
        "MPOS_TEST_TOKEN",
        OsStr::new("0123456789abcdef0123456789abcdef"),
    )]);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MPOS_TEST_NAME: expected a name (not set)\n"),
        "{stderr}"
    );
}

#[test]
fn a_non_unicode_value_is_reported_not_dropped() {
    let output = run_child(&[
        (
            "MPOS_TEST_TOKEN",
            OsStr::new("0123456789abcdef0123456789abcdef"),
        ),
        ("MPOS_TEST_NAME", OsStr::from_bytes(b"tm\xffs")),
    ]);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MPOS_TEST_NAME: expected a name (value is not valid UTF-8)\n"),
        "{stderr}"
    );
}

#[test]
fn good_values_start() {
    let output = run_child(&[
        (
            "MPOS_TEST_TOKEN",
            OsStr::new("0123456789abcdef0123456789abcdef"),
        ),
        ("MPOS_TEST_NAME", OsStr::new("tms")),
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("started as tms"));
}
