//! Decoding, as hostile and odd files put it to the test: every supported format recognised by
//! content, pixel layouts and colour types flattened to 8-bit RGB, EXIF orientations turned
//! upright, extreme shapes fitted, and bombs refused by their announced size.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

use super::{Preprocess, PreprocessError, Preset};
use crate::{Classifier, Input, Outcome};

#[path = "../tests/it/images.rs"]
mod images;
use images::*;

/// Decodes the image at `path` whole and upright, under the default pixel limit.
fn decode(path: &Path) -> Result<RgbImage, PreprocessError> {
    let bytes = std::fs::read(path).map_err(PreprocessError::Io)?;
    Preset::Caffe.settings(224, 224).decode(&bytes)
}

fn chelsea() -> RgbImage {
    image::open(crate::reference::asset("chelsea.png")).unwrap().into_rgb8()
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
    let classifier = Classifier::builder().threads(Some(2)).build().unwrap();
    let inputs: Vec<Input> = paths.iter().map(Input::from_arg).collect();
    for (format, record) in formats.iter().zip(classifier.classify(&inputs)) {
        let Outcome::Predictions(top5) = &record.outcome else { panic!("{format:?}: {record:?}") };
        let synsets: Vec<&str> = top5.iter().filter_map(|p| p.synset.as_deref()).collect();
        assert!(synsets.contains(&"n02124075"), "{format:?}: Egyptian cat not in {synsets:?}");
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
    let limited = Preprocess { max_pixels: 1_000_000, ..settings };
    let err = limited.tensor(&bomb).unwrap_err();
    assert_eq!(err.to_string(), "4000x4000 pixels is over the limit of 1000000 (max_pixels)");
    // A header announcing 40000 x 40000 RGB pixels (4.8 GB) under no pixel limit at all: the
    // limit is taken as the largest one, since the allocation guard refusing the image's
    // buffer would abort.
    let unlimited = Preprocess { max_pixels: u64::MAX, ..settings };
    let err = unlimited.tensor(&png_bomb()).unwrap_err();
    assert_eq!(err.to_string(), "40000x40000 pixels is over the limit of 268435456 (max_pixels)");
}

/// Decodes `bytes` through a temp file: the one pixel of every image here.
fn first_pixel(bytes: &[u8]) -> [u8; 3] {
    let dir = tempfile::tempdir().unwrap();
    decode(&write(dir.path(), "image", bytes)).unwrap().get_pixel(0, 0).0
}

/// Images of extreme shape resize to the input in bounded memory: a 40,000,000 x 1 photo
/// would need a 26 GB intermediate in one pass (its width at the output's 224 rows).
#[test]
fn extreme_shapes_resize_within_bounded_memory() {
    for (width, height) in [(40_000_000, 1), (1, 40_000_000), (20_000_000, 2), (2, 20_000_000)] {
        let image = RgbImage::from_pixel(width, height, Rgb([9, 99, 199]));
        let resized = super::resize_exact(&image, None, 224, 224).unwrap();
        assert_eq!(resized.dimensions(), (224, 224), "{width}x{height}");
        let pixel = resized.get_pixel(112, 112).0;
        assert!(pixel.iter().zip([9, 99, 199]).all(|(a, b)| a.abs_diff(b) <= 1), "{pixel:?}");
    }
    let settings = Preset::Torchvision.settings(224, 224);
    let wide = RgbImage::from_pixel(10_000_000, 1, Rgb([9, 99, 199]));
    assert_eq!(settings.resize(&wide).unwrap().dimensions(), (224, 224), "a centre crop");
}

#[test]
fn photos_too_thin_for_the_crops_are_refused_with_the_reason() {
    use crate::crops::{images, Crops};
    let settings = Preset::Caffe.settings(224, 224);
    let thin = RgbImage::from_pixel(1_000_000, 1, Rgb([9, 99, 199]));
    let err = images(&settings, super::Photo::Pixels(&thin), Crops::Ten).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1000000x1 pixels is too long and thin for the crops: scaled to a shorter side of 256 it \
         would be 65536000000 pixels, over the limit of 67108864"
    );
    let ordinary = RgbImage::from_pixel(500, 375, Rgb([9, 99, 199]));
    assert_eq!(images(&settings, super::Photo::Pixels(&ordinary), Crops::All).unwrap().len(), 144);
}
