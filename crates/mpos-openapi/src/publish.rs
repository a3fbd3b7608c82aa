//! Keeping a committed copy of a document true.

use std::path::Path;

use serde_json::Value;

/// The environment variable that makes [`check_published`] rewrite the committed file.
pub const UPDATE_ENV: &str = "MPOS_UPDATE_OPENAPI";

/// The committed form of a document: pretty-printed JSON with a trailing newline.
pub fn render(doc: &Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings.
    let mut text = serde_json::to_string_pretty(doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Compares `doc` with the committed file at `path` (e.g. `docs/openapi/<service>.json`);
/// with `MPOS_UPDATE_OPENAPI=1` in the environment it rewrites the file instead.
///
/// Meant for a service test, so that the published document cannot go stale: the error
/// says which line differs first and how to update.
pub fn check_published(doc: &Value, path: &Path) -> Result<(), String> {
    let update = std::env::var(UPDATE_ENV).is_ok_and(|value| value == "1");
    check_or_update(doc, path, update)
}

/// [`check_published`] with the update decision made by the caller.
pub fn check_or_update(doc: &Value, path: &Path, update: bool) -> Result<(), String> {
    let expected = render(doc);
    if update {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        return std::fs::write(path, expected)
            .map_err(|error| format!("cannot write {}: {error}", path.display()));
    }
    let committed = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "cannot read {}: {error}; run the test with {UPDATE_ENV}=1 to write it",
            path.display()
        )
    })?;
    if committed == expected {
        return Ok(());
    }
    let line = committed
        .lines()
        .zip(expected.lines())
        .position(|(left, right)| left != right)
        .unwrap_or_else(|| committed.lines().count().min(expected.lines().count()))
        + 1;
    Err(format!(
        "{} is out of date (first difference at line {line}); run the test with {UPDATE_ENV}=1 \
         to rewrite it and commit the result",
        path.display()
    ))
}
