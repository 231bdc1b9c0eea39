//! Test images made by a few lines of code each: turned, in odd colour types and formats, cut
//! short, malformed or huge. Shared by the library's decoding tests and (through `#[path]`) the
//! binary's batch tests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// A 48x32 image with a different colour in every pixel, so that any turn or flip shows.
pub fn upright() -> RgbImage {
    RgbImage::from_fn(48, 32, |x, y| Rgb([(x * 5) as u8, (y * 7) as u8, 200 - (x + y) as u8]))
}

/// `image` encoded as `format`.
pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// `image` as a JPEG of quality 100.
pub fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100);
    image.write_with_encoder(encoder).unwrap();
    bytes
}

/// The image a camera stores for `orientation` (EXIF 1-8) when the scene is `upright`, by the
/// EXIF definitions of where the stored image's first row and column belong.
pub fn stored_for(orientation: u16, up: &RgbImage) -> RgbImage {
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
pub fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0; 6]);
    let segment = [&b"Exif\0\0"[..], &tiff].concat();
    let length = u16::try_from(segment.len() + 2).unwrap().to_be_bytes();
    [&jpeg[..2], &[0xFF, 0xE1], &length, &segment, &jpeg[2..]].concat()
}

/// The mean absolute difference of two images' samples.
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 =
        a.as_raw().iter().zip(b.as_raw()).map(|(p, q)| u64::from(p.abs_diff(*q))).sum();
    total as f64 / a.as_raw().len() as f64
}

/// Writes `bytes` to `dir/name` and returns its path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A PNG in `color` of `pixels` (8-bit samples, or 16-bit big-endian ones for `Sixteen`).
pub fn png(
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

/// A 16x16 red CMYK JPEG (C=0, M=255, Y=255, K=0), as printers' workflows write them.
pub fn cmyk_jpeg() -> Vec<u8> {
    let mut bytes = Vec::new();
    let pixels = [0u8, 255, 255, 0].repeat(16 * 16);
    let encoder = jpeg_encoder::Encoder::new(&mut bytes, 100);
    encoder.encode(&pixels, 16, 16, jpeg_encoder::ColorType::Cmyk).unwrap();
    bytes
}

/// A two-frame GIF: red, then blue.
pub fn animated_gif() -> Vec<u8> {
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
pub fn bad_crc(png: &[u8]) -> Vec<u8> {
    let mut bytes = png.to_vec();
    bytes[8 + 8 + 13] ^= 0xFF;
    bytes
}

/// A small TIFF whose width tag claims to be 4 GB of text: tiff 0.11.3 printed a `dbg!` line
/// for it.
pub fn text_width_tiff() -> Vec<u8> {
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
pub fn partial_palette_png() -> Vec<u8> {
    png(1, 1, png::ColorType::Indexed, png::BitDepth::Eight, &[0], Some(&[10, 20, 30, 40]))
}

/// A file of `size` zero bytes that takes no room on disk.
pub fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    path
}

/// A PNG whose header announces 40000 x 40000 RGB pixels (4.8 GB decoded) in a few dozen bytes.
pub fn png_bomb() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 40_000, 40_000);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().unwrap();
    writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x03, 0, 0, 0, 0, 1]).unwrap();
    drop(writer);
    bytes
}

/// A grey 8-bit PNG of `width` x `height` pixels, all mid-grey: a few hundred kilobytes for the
/// most pixels the default limit takes, in any shape (178,956,970 x 1 makes 522 KB).
pub fn grey_png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&vec![128u8; width as usize * height as usize]).unwrap();
    writer.finish().unwrap();
    bytes
}
