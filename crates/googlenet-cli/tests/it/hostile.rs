//! Hostile and broken inputs, each made here by a few lines of code: the library decodes what
//! can be decoded the right way up and in the right colours, and one batch run through the real
//! binary gives every good file its result, every bad one a one-line error, exit code 2 and a
//! summary that counts them.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use crate::common::{asset, decode, googlenet};
use googlenet::preprocess::{self, PreprocessError, Preset};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use serde_json::Value;

/// A 48x32 image with a different colour in every pixel, so that any turn or flip shows.
fn upright() -> RgbImage {
    RgbImage::from_fn(48, 32, |x, y| Rgb([(x * 5) as u8, (y * 7) as u8, 200 - (x + y) as u8]))
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100);
    image.write_with_encoder(encoder).unwrap();
    bytes
}

/// The image a camera stores for `orientation` (EXIF 1-8) when the scene is `upright`, by the
/// EXIF definitions of where the stored image's first row and column belong.
fn stored_for(orientation: u16, up: &RgbImage) -> RgbImage {
    let (w, h) = up.dimensions();
    let at = |x: u32, y: u32| *up.get_pixel(x, y);
    match orientation {
        1 => RgbImage::from_fn(w, h, at),
        2 => RgbImage::from_fn(w, h, |x, y| at(w - 1 - x, y)),
        3 => RgbImage::from_fn(w, h, |x, y| at(w - 1 - x, h - 1 - y)),
        4 => RgbImage::from_fn(w, h, |x, y| at(x, h - 1 - y)),
        5 => RgbImage::from_fn(h, w, |x, y| at(y, x)),
        6 => RgbImage::from_fn(h, w, |x, y| at(w - 1 - y, x)),
        7 => RgbImage::from_fn(h, w, |x, y| at(w - 1 - y, h - 1 - x)),
        8 => RgbImage::from_fn(h, w, |x, y| at(y, h - 1 - x)),
        _ => unreachable!(),
    }
}

/// `jpeg` with an EXIF segment holding only the orientation tag, right after the start marker.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0; 6]);
    let segment = [&b"Exif\0\0"[..], &tiff].concat();
    let length = u16::try_from(segment.len() + 2).unwrap().to_be_bytes();
    [&jpeg[..2], &[0xFF, 0xE1], &length, &segment, &jpeg[2..]].concat()
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let total: u64 =
        a.as_raw().iter().zip(b.as_raw()).map(|(p, q)| u64::from(p.abs_diff(*q))).sum();
    total as f64 / a.as_raw().len() as f64
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn every_exif_orientation_is_turned_upright() {
    let up = upright();
    let dir = tempfile::tempdir().unwrap();
    for orientation in 1..=8 {
        let stored = jpeg(&stored_for(orientation, &up));
        let tagged = write(
            dir.path(),
            &format!("o{orientation}.jpg"),
            &with_orientation(&stored, orientation),
        );
        let decoded = decode(&tagged).unwrap();
        assert_eq!(decoded.dimensions(), up.dimensions(), "orientation {orientation}");
        let diff = mean_abs_diff(&decoded, &up);
        assert!(diff < 2.0, "orientation {orientation}: mean difference {diff}");
        if orientation != 1 {
            let plain = decode(&write(dir.path(), "plain.jpg", &stored)).unwrap();
            let untouched =
                plain.dimensions() != up.dimensions() || mean_abs_diff(&plain, &up) > 20.0;
            assert!(
                untouched,
                "orientation {orientation}: the stored image differs from the upright one"
            );
        }
    }
}

/// A PNG in `color` of `pixels` (8-bit samples, or 16-bit big-endian ones for `Sixteen`).
fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    pixels: &[u8],
    palette: Option<&[u8]>,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if let Some(palette) = palette {
        encoder.set_palette(palette.to_vec());
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
    writer.finish().unwrap();
    bytes
}

/// Decodes `bytes` through a temp file: the one pixel of every image here.
fn first_pixel(bytes: &[u8]) -> [u8; 3] {
    let dir = tempfile::tempdir().unwrap();
    decode(&write(dir.path(), "image", bytes)).unwrap().get_pixel(0, 0).0
}

#[test]
fn every_colour_type_becomes_the_same_rgb() {
    use png::{BitDepth::*, ColorType::*};
    let cases: Vec<(&str, Vec<u8>, [u8; 3])> = vec![
        ("gray", png(1, 1, Grayscale, Eight, &[77], None), [77, 77, 77]),
        ("gray+alpha, opaque", png(1, 1, GrayscaleAlpha, Eight, &[77, 255], None), [77, 77, 77]),
        ("gray+alpha, clear", png(1, 1, GrayscaleAlpha, Eight, &[77, 0], None), [255, 255, 255]),
        ("palette", png(1, 1, Indexed, Eight, &[1], Some(&[0, 0, 0, 10, 20, 30])), [10, 20, 30]),
        ("rgba, half", png(1, 1, Rgba, Eight, &[0, 0, 0, 128], None), [127, 127, 127]),
        (
            "16-bit rgb",
            png(1, 1, Rgb, Sixteen, &[0x12, 0x34, 0x80, 0, 0xFF, 0xFF], None),
            [18, 128, 255],
        ),
        ("cmyk jpeg", cmyk_jpeg(), [255, 0, 0]),
        ("animated gif: the first frame", animated_gif(), [250, 0, 0]),
    ];
    for (name, bytes, expected) in cases {
        let pixel = first_pixel(&bytes);
        let close = pixel.iter().zip(expected).all(|(p, e)| p.abs_diff(e) <= 3);
        assert!(close, "{name}: {pixel:?}, expected {expected:?}");
    }
}

/// A 16x16 red CMYK JPEG (C=0, M=255, Y=255, K=0), as printers' workflows write them.
fn cmyk_jpeg() -> Vec<u8> {
    let mut bytes = Vec::new();
    let pixels = [0u8, 255, 255, 0].repeat(16 * 16);
    let encoder = jpeg_encoder::Encoder::new(&mut bytes, 100);
    encoder.encode(&pixels, 16, 16, jpeg_encoder::ColorType::Cmyk).unwrap();
    bytes
}

/// A two-frame GIF: red, then blue.
fn animated_gif() -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        for color in [[250, 0, 0, 255], [0, 0, 250, 255]] {
            let frame = image::RgbaImage::from_pixel(8, 8, image::Rgba(color));
            encoder.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    bytes
}

/// `png` with one byte of its IHDR chunk's CRC changed.
fn bad_crc(png: &[u8]) -> Vec<u8> {
    let mut bytes = png.to_vec();
    bytes[8 + 8 + 13] ^= 0xFF;
    bytes
}

#[test]
fn extreme_shapes_fit_the_input_in_both_resize_modes() {
    let dir = tempfile::tempdir().unwrap();
    for (width, height) in [(1, 1), (1, 10_000), (10_000, 1)] {
        let image = DynamicImage::ImageRgb8(RgbImage::from_pixel(width, height, Rgb([9, 99, 199])));
        let path = write(dir.path(), "shape.png", &encode(&image, ImageFormat::Png));
        for preset in [Preset::Caffe, Preset::Torchvision] {
            let tensor = preset.settings(224, 224).load(&path).unwrap();
            assert_eq!(tensor.shape(), &[3, 224, 224], "{width}x{height}");
            assert!(tensor.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn a_directory_or_a_bomb_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Preset::Caffe.settings(224, 224);
    assert!(matches!(settings.load(dir.path()), Err(PreprocessError::Io(_))));
    // 4000 x 4000 black pixels inflate to 48 MB from a few kilobytes.
    let bomb =
        png(4000, 4000, png::ColorType::Rgb, png::BitDepth::Eight, &vec![0; 4000 * 4000 * 3], None);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let limited = preprocess::Preprocess { max_pixels: 1_000_000, ..settings };
    let err = limited.tensor(&bomb).unwrap_err();
    assert_eq!(err.to_string(), "4000x4000 pixels is over the limit of 1000000 (--max-pixels)");
    // A header announcing 40000 x 40000 RGB pixels (4.8 GB) under no pixel limit at all: the
    // limit is taken as the largest one, since the allocation guard refusing the image's
    // buffer would abort.
    let unlimited = preprocess::Preprocess { max_pixels: u64::MAX, ..settings };
    let err = unlimited.tensor(&crate::common::png_bomb()).unwrap_err();
    assert_eq!(err.to_string(), "40000x40000 pixels is over the limit of 268435456 (--max-pixels)");
}

/// A small TIFF whose width tag claims to be 4 GB of text: tiff 0.11.3 printed a `dbg!` line
/// for it.
fn text_width_tiff() -> Vec<u8> {
    let mut tiff = encode(&DynamicImage::ImageRgb8(RgbImage::new(4, 4)), ImageFormat::Tiff);
    let directory = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes([tiff[directory], tiff[directory + 1]]) as usize;
    let width = (0..count)
        .map(|i| directory + 2 + 12 * i)
        .find(|&e| tiff[e..e + 2] == 256u16.to_le_bytes())
        .unwrap();
    tiff[width + 2..width + 8].copy_from_slice(&[2, 0, 0, 0, 0, 0xF0]);
    tiff
}

/// A one-pixel palette PNG whose palette is one entry and a byte: png 0.18.1 panicked on it.
fn partial_palette_png() -> Vec<u8> {
    png(1, 1, png::ColorType::Indexed, png::BitDepth::Eight, &[0], Some(&[10, 20, 30, 40]))
}

/// A file of `size` zero bytes that takes no room on disk.
fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    path
}

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
