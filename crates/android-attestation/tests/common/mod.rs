//! The copied android/keyattestation test data: where it is, and walking it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// `tests/data/testdata`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/testdata")
}

/// Every file under `dir` (recursively) whose extension is `ext`, appended to `out`.
pub fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read test data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// A fixture's path relative to the test data, for messages.
pub fn name(path: &Path) -> String {
    path.strip_prefix(data_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}
