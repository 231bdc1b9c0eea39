//! Reading back a JSON Lines output for `--resume`: which images it already holds.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

/// The paths recorded in the JSON Lines file at `path` (none when it does not exist). A last
/// line cut short by a killed run is removed from the file, so that appending starts on a
/// fresh line and that image is done again.
pub fn completed_paths(path: &Path) -> Result<HashSet<String>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot resume {}", path.display())),
    };
    let mut text = Vec::new();
    file.read_to_end(&mut text).with_context(|| format!("cannot read {}", path.display()))?;
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        file.set_len(complete as u64)
            .with_context(|| format!("cannot repair {}", path.display()))?;
    }
    text.get(..complete)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .filter_map(|(n, line)| {
            let record = serde_json::from_slice::<serde_json::Value>(line).with_context(|| {
                format!("{} line {}: not JSON Lines output of googlenet", path.display(), n + 1)
            });
            // The line of `--shapes` names no image.
            match record {
                Ok(record) if record.get("shapes").is_some() => None,
                Ok(record) => Some(
                    record
                        .get("path")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                        .with_context(|| {
                            format!("{} line {}: no \"path\" field", path.display(), n + 1)
                        }),
                ),
                Err(err) => Some(Err(err)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_count_and_a_cut_line_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.jsonl");
        std::fs::write(&file, "{\"path\":\"a.jpg\",\"error\":\"x\"}\n{\"path\":\"b.jpg\"}\n{\"pa")
            .unwrap();
        let done = completed_paths(&file).unwrap();
        assert_eq!(done, HashSet::from(["a.jpg".to_owned(), "b.jpg".to_owned()]));
        assert!(std::fs::read_to_string(&file).unwrap().ends_with("}\n"));
    }

    #[test]
    fn a_missing_file_is_a_fresh_start_and_garbage_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(completed_paths(&dir.path().join("none.jsonl")).unwrap().is_empty());
        let file = dir.path().join("table.txt");
        std::fs::write(&file, "assets/chelsea.png\n").unwrap();
        assert!(completed_paths(&file).is_err());
    }
}
