//! `googlenet similar` through the real binary: look-alikes from a folder and from a `.npy`
//! array, and groups of near-duplicates made here from the shared photos.

use std::path::{Path, PathBuf};

use crate::common::{googlenet, samples, shared_model};
use image::imageops::{self, FilterType};
use serde_json::Value;

/// Runs `googlenet similar` on the shared model; returns the exit code and the JSON document.
fn similar(args: &[&str]) -> (Option<i32>, Value, String) {
    let output = googlenet()
        .args(["similar", "-q", "--format", "json", "--model", shared_model().to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let document = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), document, stderr)
}

/// Eight shared photos in a folder, and beside three of them a copy made by `change`, saved as
/// `<stem>~copy.jpg` at JPEG quality `quality`. Returns the folder and the three originals.
fn library(
    change: fn(image::RgbImage) -> image::RgbImage,
    quality: u8,
) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    for (i, photo) in samples().iter().step_by(11).take(8).enumerate() {
        let dest = dir.path().join(photo.file_name().unwrap());
        std::fs::copy(photo, &dest).unwrap();
        if i % 3 == 0 {
            let image = image::open(photo).unwrap().into_rgb8();
            let stem = dest.file_stem().unwrap().to_str().unwrap();
            let file = std::fs::File::create(dir.path().join(format!("{stem}~copy.jpg"))).unwrap();
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(file, quality);
            change(image).write_with_encoder(encoder).unwrap();
            originals.push(dest);
        }
    }
    (dir, originals)
}

fn half(image: image::RgbImage) -> image::RgbImage {
    imageops::resize(&image, image.width() / 2, image.height() / 2, FilterType::Triangle)
}

fn copy_of(original: &Path) -> String {
    let stem = original.file_stem().unwrap().to_str().unwrap();
    original.with_file_name(format!("{stem}~copy.jpg")).to_str().unwrap().to_owned()
}

#[test]
fn a_photos_closest_look_alike_is_its_copy_from_a_folder_or_an_array() {
    let (dir, originals) = library(half, 90);
    let folder = dir.path().to_str().unwrap();
    let queries: Vec<&str> = originals.iter().map(|p| p.to_str().unwrap()).collect();
    let broken = dir.path().join("not-a-photo.txt");
    std::fs::write(&broken, "text").unwrap();
    let mut args = vec!["-n", "3", "--in", folder, broken.to_str().unwrap()];
    args.extend(&queries);
    let (code, found, stderr) = similar(&args);
    assert_eq!(code, Some(2), "the broken query: {stderr}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for (query, result) in queries.iter().zip(&results[..3]) {
        assert_eq!(result["path"], *query);
        let matches = result["similar"].as_array().unwrap();
        assert_eq!(matches.len(), 3);
        assert_eq!(matches[0]["path"], copy_of(Path::new(query)), "{result}");
        let best = matches[0]["similarity"].as_f64().unwrap();
        assert!(best > matches[1]["similarity"].as_f64().unwrap() + 0.3, "{result}");
        assert!(matches.iter().all(|m| m["path"] != *query), "a query is not its own look-alike");
        let scores: Vec<f64> = matches.iter().map(|m| m["similarity"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
    assert!(results[3]["error"].as_str().unwrap().starts_with("not an image"));
    let npy = dir.path().join("feats.npy");
    googlenet()
        .args(["embed", "-q", "--model", shared_model().to_str().unwrap(), folder])
        .args(["-o", npy.to_str().unwrap()])
        .assert()
        .success();
    let (code, from_npy, _) =
        similar(&[&["-n", "3", "--in", npy.to_str().unwrap()], &queries[..]].concat());
    assert_eq!(code, Some(0));
    for (a, b) in results.iter().zip(from_npy["results"].as_array().unwrap()) {
        for (x, y) in a["similar"].as_array().unwrap().iter().zip(b["similar"].as_array().unwrap())
        {
            assert_eq!(x["path"], y["path"]);
            assert!(
                (x["similarity"].as_f64().unwrap() - y["similarity"].as_f64().unwrap()).abs()
                    < 1e-5
            );
        }
    }
}

#[test]
fn near_duplicates_are_grouped_and_nothing_else() {
    let mirror = |image: image::RgbImage| imageops::flip_horizontal(&image);
    let same = |image: image::RgbImage| image;
    for (change, quality) in [(mirror as fn(image::RgbImage) -> image::RgbImage, 90), (same, 30)] {
        let (dir, originals) = library(change, quality);
        let (code, found, stderr) = similar(&["--duplicates", dir.path().to_str().unwrap()]);
        assert_eq!(code, Some(0), "{stderr}");
        let groups: Vec<Vec<String>> = found["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                g["paths"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect();
        let expected: Vec<Vec<String>> =
            originals.iter().map(|o| vec![o.to_str().unwrap().to_owned(), copy_of(o)]).collect();
        assert_eq!(groups, expected);
    }
}

#[test]
fn arrays_of_other_features_and_bad_thresholds_are_refused() {
    let (dir, originals) = library(half, 90);
    let npy = dir.path().join("layer.npy");
    googlenet()
        .args([
            "embed",
            "-q",
            "--model",
            shared_model().to_str().unwrap(),
            "--layer",
            "inception_5b/output",
        ])
        .args(["-o", npy.to_str().unwrap(), originals[0].to_str().unwrap()])
        .assert()
        .success();
    let (code, _, stderr) =
        similar(&[originals[0].to_str().unwrap(), "--in", npy.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("holds rows of 50176 values, but the model's features have 1024"),
        "{stderr}"
    );
    let (code, _, stderr) = similar(&["--duplicates", ".", "--threshold", "1.5"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a number from -1 to 1"), "{stderr}");
}
