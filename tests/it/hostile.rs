//! Hostile and broken inputs, each made by a few lines of code (`crates/googlenet/tests/it/
//! images.rs`, which the library's decoding tests share): one batch run through the real binary
//! gives every good file its result, every bad one a one-line error, exit code 2 and a summary
//! that counts them.

use std::path::Path;

use crate::common::images::*;
use crate::common::{asset, googlenet, with_peak_memory};
use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::Value;

fn jsonl(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn a_batch_of_hostile_files_reports_each_and_classifies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cat = image::open(asset("chelsea.png")).unwrap();
    let cat_png = encode(&cat, ImageFormat::Png);
    let cat_jpeg = jpeg(&cat.to_rgb8());
    let good = [
        write(root, "png-named.jpg", &cat_png),
        write(root, "rotated.jpg", &with_orientation(&jpeg(&stored_for(6, &cat.to_rgb8())), 6)),
        write(
            root,
            "gray.png",
            &encode(&DynamicImage::ImageLuma8(cat.to_luma8()), ImageFormat::Png),
        ),
        write(
            root,
            "tiny.png",
            &encode(&DynamicImage::ImageRgb8(RgbImage::new(1, 1)), ImageFormat::Png),
        ),
        write(
            root,
            "tall.png",
            &encode(&DynamicImage::ImageRgb8(RgbImage::new(1, 10_000)), ImageFormat::Png),
        ),
        write(root, "cmyk.jpg", &cmyk_jpeg()),
        write(root, "animated.gif", &animated_gif()),
    ];
    std::fs::create_dir(root.join("folder.jpg")).unwrap();
    let inside = write(&root.join("folder.jpg"), "inside.png", &cat_png);
    let bad = [
        (write(root, "empty.jpg", b""), "empty file"),
        (write(root, "cut.jpg", &cat_jpeg[..cat_jpeg.len() / 2]), "truncated JPEG"),
        (write(root, "cut.png", &cat_png[..cat_png.len() / 2]), "cannot decode"),
        (write(root, "crc.png", &bad_crc(&cat_png)), "CRC"),
        (write(root, "text.jpg", b"a shopping list"), "not an image"),
        (sparse(root, "huge.jpg", 3 << 30), "file over 2795 MiB"),
        (write(root, "text-width.tif", &text_width_tiff()), "malformed TIFF (tag 256,"),
        (write(root, "partial-palette.png", &partial_palette_png()), "a palette of 4 bytes"),
    ];
    let output = googlenet().args(["classify", "--format", "jsonl"]).arg(root).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary = format!("{} classified, {} failed", good.len() + 1, bad.len());
    assert!(stderr.contains(&summary), "{stderr}");
    let records = jsonl(&output.stdout);
    assert_eq!(records.len(), good.len() + 1 + bad.len());
    let record = |path: &Path| {
        records
            .iter()
            .find(|r| r["path"] == path.to_str().unwrap())
            .unwrap_or_else(|| panic!("{}", path.display()))
    };
    for path in good.iter().chain([&inside]) {
        assert!(
            record(path)["predictions"].as_array().is_some_and(|p| p.len() == 5),
            "{}",
            path.display()
        );
    }
    for name in ["png-named.jpg", "rotated.jpg", "gray.png"] {
        let top = &record(&root.join(name))["predictions"][0]["name"];
        assert!(top.as_str().unwrap().contains("cat"), "{name}: {top}");
    }
    for (path, reason) in &bad {
        let error = record(path)["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{}: {error:?}, expected {reason:?}", path.display());
        let line = stderr.lines().filter(|l| l.contains(path.to_str().unwrap())).count();
        assert_eq!(line, 1, "one line on stderr for {}: {stderr}", path.display());
    }
    assert!(stderr.lines().all(|l| l.starts_with("googlenet: ")), "{stderr}");
}

/// Photos of extreme shape up to the default pixel limit (178,956,970 x 1 is a 522 KB PNG),
/// each beside an ordinary photo: classified in bounded memory (a side over 16,384 pixels is
/// first divided by whole blocks), or refused for the crops with the reason; never an abort,
/// and the other photo keeps its record. Each runs alone: the workers decode photos side by
/// side, and a photo of 178,956,970 pixels is 537 MB decoded.
#[test]
fn extreme_shapes_are_classified_in_bounded_memory_and_keep_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let most = 178_956_970;
    let run = |photo: &Path, extra: &[&str]| {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("googlenet"));
        command.current_dir(crate::common::root()).env_remove("GOOGLENET_MODEL");
        command.args(["classify", "-q", "--format", "jsonl", "assets/chelsea.png"]);
        let (output, peak) = with_peak_memory(command.args(extra).arg(photo));
        println!("{} {extra:?}: peak resident memory {} MB", photo.display(), peak >> 20);
        assert!(peak < 1 << 30, "{}: peak resident memory {} MB", photo.display(), peak >> 20);
        let records = jsonl(&output.stdout);
        assert_eq!(records.len(), 2, "{records:?}");
        let by_path = |path: &str| records.iter().find(|r| r["path"] == path).unwrap().clone();
        assert!(by_path("assets/chelsea.png")["predictions"].is_array(), "{records:?}");
        (output.status.code(), by_path(photo.to_str().unwrap()))
    };
    for (w, h) in [(most, 1), (1, most), (most / 2, 2)] {
        let photo = write(dir.path(), &format!("{w}x{h}.png"), &grey_png(w, h));
        let (code, record) = run(&photo, &[]);
        assert_eq!(code, Some(0), "{record}");
        assert_eq!(record["predictions"].as_array().map(Vec::len), Some(5), "{record}");
        if h == 1 {
            let (code, record) = run(&photo, &["--crops", "10"]);
            assert_eq!(code, Some(2));
            let error = record["error"].as_str().unwrap_or_else(|| panic!("{record}"));
            assert!(error.contains("is too long and thin for the crops"), "{error}");
        }
        std::fs::remove_file(photo).unwrap();
    }
}

/// `explain` on a photo of extreme shape: its map, drawn over a copy shrunk to 16,384 pixels on
/// its longer side, in bounded memory.
#[test]
fn explain_takes_a_photo_of_extreme_shape_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let photo = write(dir.path(), "long.png", &grey_png(178_956_970, 1));
    let heatmap = dir.path().join("heat.png");
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("googlenet"));
    command.current_dir(crate::common::root()).env_remove("GOOGLENET_MODEL");
    command.args(["explain", "--patch", "112", "--stride", "112", "--out"]).arg(&heatmap);
    let (output, peak) = with_peak_memory(command.arg(&photo));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(image::image_dimensions(&heatmap).unwrap(), (16_384, 1));
    assert!(peak < 1 << 30, "peak resident memory {} MB", peak >> 20);
}
