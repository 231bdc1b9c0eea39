//! Batch classification of folders through the real binary: ordering, bad files, streaming
//! and resuming, shards, batching and `eval`.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{googlenet, samples};
use serde_json::Value;

/// A tree of real photos in nested folders, with broken files, a symlink loop, and a folder
/// and a file that cannot be read. Returns the temp dir, the good images and the bad paths
/// with the reason each must be reported with.
fn photo_tree() -> (tempfile::TempDir, Vec<PathBuf>, Vec<(PathBuf, &'static str)>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let photos = samples();
    let mut good = Vec::new();
    for (i, folder) in ["", "a", "a/b", "c"].iter().cycle().take(6).enumerate() {
        let photo = &photos[i * 15];
        let dest = root.join(folder).join(photo.file_name().unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(photo, &dest).unwrap();
        good.push(dest);
    }
    let truncated = std::fs::read(&photos[1]).unwrap();
    let bad = vec![
        (root.join("a/empty.jpg"), "empty file"),
        (root.join("a/b/cut.JPG"), "truncated JPEG"),
        (root.join("c/notes.jpg"), "not an image"),
        (root.join("a/b/loop"), "symlink loop"),
        (root.join("locked"), "cannot read folder"),
        (root.join("c/private.jpg"), "cannot read: Permission denied"),
    ];
    std::fs::write(&bad[0].0, b"").unwrap();
    std::fs::write(&bad[1].0, &truncated[..truncated.len() / 2]).unwrap();
    std::fs::write(&bad[2].0, "shopping list").unwrap();
    std::os::unix::fs::symlink(root.join("a"), &bad[3].0).unwrap();
    std::fs::create_dir(&bad[4].0).unwrap();
    std::fs::copy(&photos[2], bad[4].0.join("hidden.JPEG")).unwrap();
    std::fs::set_permissions(&bad[4].0, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::copy(&photos[3], &bad[5].0).unwrap();
    std::fs::set_permissions(&bad[5].0, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(root.join("c/readme.txt"), "not an image extension: skipped").unwrap();
    (dir, good, bad)
}

/// `googlenet` as an unprivileged user: root reads any folder, so as root a copy of the binary
/// in `dir` (the clone the tests run from may sit under a folder only root can enter) runs as
/// `nobody` through setpriv.
fn unprivileged(dir: &Path) -> Command {
    let binary = assert_cmd::cargo::cargo_bin("googlenet");
    let mut cmd = if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        let copy = dir.join("googlenet-unprivileged");
        std::fs::copy(&binary, &copy).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(copy);
        cmd
    } else {
        Command::new(binary)
    };
    cmd.env_remove("GOOGLENET_MODEL");
    cmd
}

fn jsonl(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn paths(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["path"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_folder_run_reports_every_file_in_sorted_order_with_any_thread_count() {
    let (dir, good, bad) = photo_tree();
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut runs = Vec::new();
    for threads in ["1", "2"] {
        let output = unprivileged(bin.path())
            .args(["classify", "--format", "jsonl", "--threads", threads])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("6 classified, 6 failed"), "{stderr}");
        runs.push(jsonl(&output.stdout));
    }
    assert_eq!(runs[0], runs[1], "1 and 2 threads give the same rows");
    let records = &runs[0];
    let listed = paths(records);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "rows in sorted path order");
    assert_eq!(records.len(), good.len() + bad.len(), "{listed:#?}");
    for (path, reason) in &bad {
        let record = records.iter().find(|r| r["path"] == path.to_str().unwrap());
        let error = record.and_then(|r| r["error"].as_str()).unwrap_or_default();
        assert!(error.contains(reason), "{}: {error:?}, expected {reason:?}", path.display());
    }
    for path in &good {
        let single =
            googlenet().args(["classify", "--format", "jsonl"]).arg(path).output().unwrap();
        let single = jsonl(&single.stdout).remove(0);
        let batch = records.iter().find(|r| r["path"] == path.to_str().unwrap()).unwrap();
        assert_same_predictions(batch, &single);
    }
    std::fs::set_permissions(dir.path().join("locked"), std::fs::Permissions::from_mode(0o755))
        .unwrap();
}

#[test]
fn a_killed_run_keeps_complete_lines_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.jsonl");
    // Links to the photos named around a pipe that nothing writes to: the run, which reads its
    // inputs in sorted order, cannot finish, nor write a record past the pipe, before it is
    // killed.
    let photos: Vec<PathBuf> = samples()
        .into_iter()
        .take(24)
        .enumerate()
        .map(|(i, photo)| {
            let link = dir.path().join(format!("{}{i:02}.jpg", if i < 12 { 'a' } else { 'z' }));
            std::os::unix::fs::symlink(photo, &link).unwrap();
            link
        })
        .collect();
    let blocker = dir.path().join("m.fifo");
    crate::common::blocking_fifo(&blocker);
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("googlenet"))
        .env_remove("GOOGLENET_MODEL")
        .args(["classify", "--threads", "1", "--output"])
        .arg(&out)
        .args(&photos)
        .arg(&blocker)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) < 1 {
        assert!(Instant::now() < deadline, "no rows written");
        assert!(child.try_wait().unwrap().is_none(), "the run stopped before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let written = std::fs::read(&out).unwrap();
    let kept = jsonl(&written[..written.iter().rposition(|&b| b == b'\n').unwrap() + 1]);
    assert!((1..=12).contains(&kept.len()), "{} rows kept", kept.len());
    assert!(kept.iter().all(|r| r["predictions"].as_array().is_some_and(|p| p.len() == 5)));

    googlenet()
        .args(["classify", "--quiet", "--resume", "--output"])
        .arg(&out)
        .args(&photos)
        .assert()
        .success();
    let resumed = jsonl(&std::fs::read(&out).unwrap());
    let listed = paths(&resumed);
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(listed.len(), photos.len(), "no duplicates");
    assert_eq!(unique.len(), photos.len());
    assert_eq!(paths(&resumed[..kept.len()]), paths(&kept), "the first rows are kept as they were");
}

/// Runs `classify --format jsonl` on `inputs` with `extra` flags, returning the records.
fn classify(inputs: &[&Path], extra: &[&str]) -> Vec<Value> {
    let output = googlenet()
        .args(["classify", "--quiet", "--format", "jsonl"])
        .args(extra)
        .args(inputs)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    jsonl(&output.stdout)
}

#[test]
fn shards_split_the_inputs_disjointly_and_completely() {
    let photos: Vec<PathBuf> = samples().into_iter().step_by(10).collect();
    let inputs: Vec<&Path> = photos.iter().map(PathBuf::as_path).collect();
    let whole = paths(&classify(&inputs, &[]));
    let mut union = Vec::new();
    for k in 1..=3 {
        let shard = paths(&classify(&inputs, &["--shard", &format!("{k}/3")]));
        assert!(!shard.is_empty() && shard.len() < whole.len());
        union.extend(shard);
    }
    union.sort();
    let mut expected = whole.clone();
    expected.sort();
    assert_eq!(union, expected, "every input in exactly one shard");
}

#[test]
fn batches_of_8_give_the_probabilities_of_batches_of_1() {
    let photos: Vec<PathBuf> = samples().into_iter().skip(3).step_by(9).collect();
    let inputs: Vec<&Path> = photos.iter().map(PathBuf::as_path).collect();
    let single = classify(&inputs, &["--batch-size", "1"]);
    let batched = classify(&inputs, &["--batch-size", "8"]);
    assert_eq!(single.len(), photos.len());
    assert_eq!(paths(&single), paths(&batched));
    for (a, b) in single.iter().zip(&batched) {
        assert_same_predictions(a, b);
    }
}

/// Asserts that two records of one image rank the same classes, with probabilities within
/// 1e-5: a batch's classifier product adds in another order than one image's.
fn assert_same_predictions(a: &Value, b: &Value) {
    assert_eq!(a["path"], b["path"]);
    let (p, q) = (a["predictions"].as_array().unwrap(), b["predictions"].as_array().unwrap());
    assert_eq!(p.len(), q.len(), "{a} vs {b}");
    for (p, q) in p.iter().zip(q) {
        assert_eq!(p["index"], q["index"], "{a} vs {b}");
        let (p, q) = (p["probability"].as_f64().unwrap(), q["probability"].as_f64().unwrap());
        assert!((p - q).abs() <= 1e-5, "{p} vs {q}");
    }
}

#[test]
fn batches_of_two_are_the_default_once_every_thread_gets_four_images() {
    let photos = samples();
    // The batch size that -v reports in the input's shape, and the records.
    let run = |count: usize, args: &[&str]| {
        let output = googlenet()
            .args(["classify", "-v", "--quiet", "--format", "jsonl"])
            .args(args)
            .args(&photos[..count])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let records = jsonl(&output.stdout);
        assert_eq!(records.len(), count);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let shape = stderr.split_once("input `").and_then(|(_, rest)| rest.split(' ').nth(1));
        let batch = shape.expect("-v names the input's shape").split('x').next().unwrap();
        (batch.to_owned(), records)
    };
    assert_eq!(run(7, &["--threads", "2"]).0, "1");
    assert_eq!(run(8, &["--threads", "2"]).0, "2");
    assert_eq!(run(4, &["--threads", "1"]).0, "2");
    // Crops count as images: one photo's ten crops fill batches of two.
    let (batch, crops) = run(1, &["--threads", "2", "--crops", "10"]);
    assert_eq!(batch, "2");
    let (batch, one_by_one) = run(1, &["--crops", "10", "--batch-size", "1"]);
    assert_eq!(batch, "1");
    assert_same_predictions(&crops[0], &one_by_one[0]);
}

#[test]
fn whole_document_outputs_are_complete_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let csv = dir.path().join("results.csv");
    let photo = crate::common::asset("chelsea.png");
    for (format, path) in [("json", &json), ("csv", &csv)] {
        googlenet()
            .args(["classify", "--quiet", "-k", "2", "--format", format, "--output"])
            .arg(path)
            .arg(&photo)
            .arg(dir.path().join("missing.jpg"))
            .assert()
            .code(2);
    }
    let document: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(document["results"].as_array().unwrap().len(), 2);
    let csv = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "path,rank,index,synset,name,probability,error");
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows.iter().any(|r| r.contains("chelsea.png,1,285,n02124075,Egyptian cat,0.618")));
    assert!(rows.iter().any(|r| r.contains("chelsea.png,2,282,n02123159,tiger cat,")), "{csv}");
    assert!(rows.iter().any(
        |r| r.ends_with("missing.jpg,,,,,,cannot read: No such file or directory (os error 2)")
    ));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
}

#[test]
fn paths_can_come_from_stdin_and_be_filtered() {
    let photos: Vec<PathBuf> = samples().into_iter().take(3).collect();
    let list: String = photos.iter().map(|p| format!("{}\n", p.display())).collect();
    let output = googlenet()
        .args(["classify", "--quiet", "--format", "jsonl", "--files-from", "-", "--exclude"])
        .arg(format!("*{}", photos[1].file_name().unwrap().to_str().unwrap()))
        .write_stdin(list)
        .output()
        .unwrap();
    assert!(output.status.success());
    let expected: Vec<String> =
        [&photos[0], &photos[2]].iter().map(|p| p.display().to_string()).collect();
    assert_eq!(paths(&jsonl(&output.stdout)), expected);
}

#[test]
fn eval_reaches_the_reference_accuracy_on_the_samples() {
    let output = googlenet()
        .args(["eval", "--quiet", "--format", "json"])
        .arg(crate::common::shared().join("data/imagenet-samples"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["images"], 100);
    assert_eq!(report["failed"], 0);
    assert!(report["top1"].as_f64().unwrap() >= 0.76, "{report}");
    assert!(report["top5"].as_f64().unwrap() >= 0.94, "{report}");
    let confusions = report["confusions"].as_array().unwrap();
    assert_eq!(confusions.len(), 10);
    assert!(confusions.iter().all(|c| c["truth"]["synset"] != c["predicted"]["synset"]));
}

#[test]
fn a_non_utf8_name_is_classified_and_reported() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"caf\xe9.png");
    std::fs::copy(crate::common::asset("chelsea.png"), dir.path().join(name)).unwrap();
    let output =
        googlenet().args(["classify", "--format", "jsonl"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("caf\u{FFFD}.png: name is not valid UTF-8"), "{stderr}");
    let records = jsonl(&output.stdout);
    assert_eq!(records.len(), 1);
    assert!(records[0]["path"].as_str().unwrap().ends_with("caf\u{FFFD}.png"));
    assert_eq!(records[0]["predictions"][0]["synset"], "n02124075");
    // The same name in a path list, byte for byte, on a CRLF line among blank ones.
    let list = [b"\n", dir.path().join(name).as_os_str().as_bytes(), b"\r\n  \n"].concat();
    let output = googlenet()
        .args(["classify", "--format", "jsonl", "--files-from", "-"])
        .write_stdin(list)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(jsonl(&output.stdout), records);
}
