//! Decoding: every supported format is recognised by content, pixel layouts are flattened to
//! 8-bit RGB, and the EXIF orientation turns the photo upright.

use std::path::{Path, PathBuf};

use crate::common::decode;
use image::codecs::jpeg::JpegEncoder;
use image::{imageops, DynamicImage, ImageEncoder, ImageFormat, RgbImage};

fn chelsea() -> RgbImage {
    image::open(crate::common::asset("chelsea.png")).unwrap().into_rgb8()
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Runs `googlenet classify --format json -k 5` on `paths` and returns each result's top-5
/// synsets, failing on any error record.
fn top5_synsets(paths: &[PathBuf]) -> Vec<Vec<String>> {
    let output = crate::common::googlenet()
        .args(["classify", "--format", "json"])
        .args(paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    document["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let predictions = r["predictions"].as_array().unwrap_or_else(|| panic!("{r}"));
            predictions.iter().map(|p| p["synset"].as_str().unwrap().to_owned()).collect()
        })
        .collect()
}

#[test]
fn every_format_is_decoded_by_content_and_classified() {
    let dir = tempfile::tempdir().unwrap();
    let photo = DynamicImage::ImageRgb8(chelsea());
    let formats = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ];
    let paths: Vec<PathBuf> = formats
        .iter()
        .map(|&format| {
            // The extension says nothing: decoding must go by content.
            let path = dir.path().join(format!("chelsea-{format:?}.img"));
            let image =
                if format == ImageFormat::WebP { photo.to_rgba8().into() } else { photo.clone() };
            image.save_with_format(&path, format).unwrap();
            assert!(decode(&path).is_ok(), "{format:?}");
            path
        })
        .collect();
    for (format, top5) in formats.iter().zip(top5_synsets(&paths)) {
        assert!(top5.contains(&"n02124075".to_owned()), "{format:?}: Egyptian cat not in {top5:?}");
    }
}

#[test]
fn pixel_layouts_become_8_bit_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = chelsea();
    let layouts: Vec<(&str, DynamicImage)> = vec![
        ("rgb16", DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).into_rgb16())),
        ("rgba", DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).into_rgba8())),
        ("gray", DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).into_luma8())),
        ("gray16", DynamicImage::ImageLuma16(DynamicImage::ImageRgb8(rgb.clone()).into_luma16())),
        (
            "gray-alpha",
            DynamicImage::ImageLumaA8(DynamicImage::ImageRgb8(rgb.clone()).into_luma_alpha8()),
        ),
    ];
    for (name, image) in layouts {
        let path = dir.path().join(format!("{name}.png"));
        image.save(&path).unwrap();
        let decoded = decode(&path).unwrap();
        assert_eq!(decoded.dimensions(), rgb.dimensions(), "{name}");
        let expected = if name.starts_with("gray") {
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).into_luma8()).into_rgb8()
        } else {
            rgb.clone()
        };
        assert!(mean_abs_diff(&decoded, &expected) < 0.01, "{name}");
    }
}

/// A big-endian TIFF/EXIF block holding only the Orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
    exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    exif.extend_from_slice(&value.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    exif
}

/// What a camera stores so that orientation `value` displays `upright`.
fn stored_for(upright: &RgbImage, value: u16) -> RgbImage {
    match value {
        1 => upright.clone(),
        2 => imageops::flip_horizontal(upright),
        3 => imageops::rotate180(upright),
        4 => imageops::flip_vertical(upright),
        5 => imageops::flip_horizontal(&imageops::rotate90(upright)),
        6 => imageops::rotate270(upright),
        7 => imageops::flip_vertical(&imageops::rotate90(upright)),
        8 => imageops::rotate90(upright),
        _ => unreachable!(),
    }
}

fn write_jpeg(path: &Path, image: &RgbImage, exif: Vec<u8>) {
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 95);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(image, image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn exif_orientations_1_to_8_come_out_upright() {
    let dir = tempfile::tempdir().unwrap();
    let upright = chelsea();
    for value in 1..=8 {
        let path = dir.path().join(format!("orientation-{value}.jpg"));
        write_jpeg(&path, &stored_for(&upright, value), exif_orientation(value));
        let decoded = decode(&path).unwrap();
        assert_eq!(decoded.dimensions(), upright.dimensions(), "orientation {value}");
        let diff = mean_abs_diff(&decoded, &upright);
        assert!(diff < 3.0, "orientation {value}: mean difference {diff} from upright");
    }
}
