//! The paper's test-time crops (section 7), whose softmax probabilities are averaged: 10 crops
//! (the four corners and the centre of the photo scaled to a shorter side of 256, and their
//! mirror images), or 144 (the photo scaled to shorter sides of 256, 288, 320 and 352; of each
//! scale the left, centre and right square, or top, centre and bottom for a portrait photo; of
//! each square the four corners and the centre at the input size, and the whole square resized
//! to it; and the mirror image of each: 4 x 3 x 6 x 2).
//!
//! The sides are for an input of 224: another input scales them by its shorter side / 224.

use std::str::FromStr;

use image::imageops;
use image::RgbImage;

use crate::preprocess::{resize_exact, Photo, Preprocess, PreprocessError};

/// How many crops of each photo are classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Crops {
    /// The photo fitted to the input as the preset says: no crops.
    #[default]
    One,
    /// The corners and the centre of the 256 scale, and their mirror images.
    Ten,
    /// 4 scales x 3 squares x 6 crops x 2 mirror images.
    All,
}

impl FromStr for Crops {
    type Err = String;

    fn from_str(text: &str) -> Result<Crops, String> {
        match text.trim() {
            "1" => Ok(Crops::One),
            "10" => Ok(Crops::Ten),
            "144" => Ok(Crops::All),
            other => Err(format!("`{other}` crops: the protocols are 1, 10 and 144")),
        }
    }
}

impl Crops {
    /// How many crops a photo gives.
    pub fn count(self) -> usize {
        match self {
            Crops::One => 1,
            Crops::Ten => 10,
            Crops::All => 144,
        }
    }

    /// The shorter sides of the scales, for an input of 224.
    fn scales(self) -> &'static [u32] {
        match self {
            Crops::One => &[],
            Crops::Ten => &[256],
            Crops::All => &[256, 288, 320, 352],
        }
    }
}

/// One crop: the photo scaled to `scaled` (width, height), the `region` `[left, top, width,
/// height]` of the scaled photo, resized to the input size when it is not that size, and then
/// mirrored left to right or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// The size of the scaled photo.
    pub scaled: (u32, u32),
    /// The part of the scaled photo taken.
    pub region: [u32; 4],
    /// Whether the crop is mirrored.
    pub mirror: bool,
}

/// The crops of `crops` for a photo of `photo` pixels and an input of `input` pixels, in the
/// order scale, square, crop (corners clockwise from the top left, the centre, the whole
/// square), mirror. Empty for [`Crops::One`].
pub(crate) fn boxes(crops: Crops, photo: (u32, u32), input: (u32, u32)) -> Vec<CropBox> {
    let (input_w, input_h) = input;
    let unit = f64::from(input_w.min(input_h)) / 224.0;
    let mut boxes = Vec::with_capacity(crops.count());
    for &short in crops.scales() {
        let scaled = scaled_size(photo, (f64::from(short) * unit).round() as u32);
        let (w, h) = scaled;
        let squares: Vec<[u32; 4]> = match crops {
            Crops::Ten => vec![[0, 0, w, h]],
            _ if w >= h => [0, (w - h) / 2, w - h].map(|x| [x, 0, h, h]).to_vec(),
            _ => [0, (h - w) / 2, h - w].map(|y| [0, y, w, w]).to_vec(),
        };
        for [x, y, side_w, side_h] in squares {
            let (right, bottom) = (side_w.saturating_sub(input_w), side_h.saturating_sub(input_h));
            let mut regions: Vec<[u32; 4]> =
                [(0, 0), (right, 0), (right, bottom), (0, bottom), (right / 2, bottom / 2)]
                    .map(|(dx, dy)| [x + dx, y + dy, input_w.min(side_w), input_h.min(side_h)])
                    .to_vec();
            if crops == Crops::All {
                regions.push([x, y, side_w, side_h]);
            }
            for region in regions {
                for mirror in [false, true] {
                    boxes.push(CropBox { scaled, region, mirror });
                }
            }
        }
    }
    boxes
}

/// The most pixels a photo scaled for the crops may have: 64 megapixels (192 MiB), far above
/// any photo's 256 to 352 pixels on its shorter side, and bounded for one a million times
/// longer than it is wide.
const MAX_SCALED_PIXELS: u64 = 1 << 26;

/// Refuses a photo of `size` whose largest scale for `crops` is over [`MAX_SCALED_PIXELS`].
fn check_scales(size: (u32, u32), crops: Crops) -> Result<(), PreprocessError> {
    let Some(short) = crops.scales().iter().copied().max() else { return Ok(()) };
    let (w, h) = (f64::from(size.0), f64::from(size.1));
    let scale = f64::from(short) / w.min(h);
    let scaled = ((w * scale).round() * (h * scale).round()) as u64;
    if scaled > MAX_SCALED_PIXELS {
        let (width, height) = size;
        let limit = MAX_SCALED_PIXELS;
        return Err(PreprocessError::TooThinForCrops { width, height, short, scaled, limit });
    }
    Ok(())
}

/// The size of a photo of `photo` pixels scaled so that its shorter side is `short`.
fn scaled_size((w, h): (u32, u32), short: u32) -> (u32, u32) {
    let long = |a: u32, b: u32| (f64::from(a) * f64::from(short) / f64::from(b)).round() as u32;
    if w <= h {
        (short, long(h, w).max(short))
    } else {
        (long(w, h).max(short), short)
    }
}

/// The input images of a photo for `crops`: the one image `Preprocess::input_image` makes, or
/// each crop at the input size, not yet normalised.
pub fn images(
    preprocess: &Preprocess,
    photo: Photo<'_>,
    crops: Crops,
) -> Result<Vec<RgbImage>, PreprocessError> {
    let largest = crops.scales().iter().copied().max();
    let Some(largest) = largest else { return Ok(vec![preprocess.input_image(photo)?]) };
    let input = (preprocess.width, preprocess.height);
    // Twice the largest scale's shorter side in both directions, as for one crop.
    let side = (2 * largest * input.0.max(input.1)).div_ceil(224);
    let photo = preprocess.photo_at_least(photo, side)?;
    check_scales(photo.dimensions(), crops)?;
    let boxes = boxes(crops, photo.dimensions(), input);
    let mut scaled: Option<((u32, u32), RgbImage)> = None;
    let mut images = Vec::with_capacity(boxes.len());
    for crop in boxes {
        if scaled.as_ref().is_none_or(|(size, _)| *size != crop.scaled) {
            let (w, h) = crop.scaled;
            scaled = Some((crop.scaled, resize_exact(&photo, None, w, h)?));
        }
        let Some((_, scaled)) = &scaled else { continue };
        let [x, y, w, h] = crop.region;
        let mut image = imageops::crop_imm(scaled, x, y, w, h).to_image();
        if (w, h) != input {
            image = resize_exact(&image, None, input.0, input.1)?;
        }
        if crop.mirror {
            imageops::flip_horizontal_in_place(&mut image);
        }
        images.push(image);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG of `w` x `h` pixels whose red and green say where each pixel is: linear ramps from
    /// 0 at the left (top) edge to 255 at the right (bottom) one.
    fn ramps(w: u32, h: u32) -> Vec<u8> {
        let ramp = |at: u32, size: u32| (f64::from(at) * 255.0 / f64::from(size - 1)).round() as u8;
        let image = RgbImage::from_fn(w, h, |x, y| image::Rgb([ramp(x, w), ramp(y, h), 90]));
        let mut png = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        png
    }

    /// Checks every crop of a 500 x 375 photo pixel by pixel against where the protocol says
    /// it comes from: crop pixel `i` is scaled-photo pixel `left + (i + 0.5) * width / 224 -
    /// 0.5` (counted from the right when mirrored), which is photo pixel `(u + 0.5) * 500 /
    /// scaled width - 0.5`, whose red is known. Pixels near the photo's edges, where the
    /// resizing filter is cut off, are left out.
    #[test]
    fn every_crop_shows_the_part_of_the_photo_the_protocol_names() {
        let (w, h) = (500u32, 375u32);
        let preprocess = crate::preprocess::Preset::Caffe.settings(224, 224);
        for crops in [Crops::Ten, Crops::All] {
            let images = images(&preprocess, Photo::File(&ramps(w, h)), crops).unwrap();
            let boxes = boxes(crops, (w, h), (224, 224));
            assert_eq!(images.len(), boxes.len());
            for (image, crop) in images.iter().zip(&boxes) {
                assert_eq!(image.dimensions(), (224, 224));
                let [left, top, rw, rh] = crop.region.map(f64::from);
                let source = |i: u32, start: f64, width: f64, scaled: u32, photo: u32| {
                    let u = start + (f64::from(i) + 0.5) * width / 224.0 - 0.5;
                    (u + 0.5) * f64::from(photo) / f64::from(scaled) - 0.5
                };
                for (i, j) in
                    (0..224).step_by(7).flat_map(|i| (0..224).step_by(7).map(move |j| (i, j)))
                {
                    let column = if crop.mirror { 223 - i } else { i };
                    let x = source(column, left, rw, crop.scaled.0, w);
                    let y = source(j, top, rh, crop.scaled.1, h);
                    if x < 4.0 || y < 4.0 || x > f64::from(w) - 5.0 || y > f64::from(h) - 5.0 {
                        continue;
                    }
                    let pixel = image.get_pixel(i, j).0;
                    let expected = [x * 255.0 / f64::from(w - 1), y * 255.0 / f64::from(h - 1)];
                    for (channel, want) in expected.iter().enumerate() {
                        let got = f64::from(pixel[channel]);
                        assert!(
                            (got - want).abs() <= 2.0,
                            "{crop:?} pixel ({i}, {j}): {got} for {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_protocols_have_their_counts() {
        for crops in [Crops::Ten, Crops::All] {
            for photo in [(500, 375), (375, 500), (299, 299), (4000, 300)] {
                assert_eq!(boxes(crops, photo, (224, 224)).len(), crops.count(), "{photo:?}");
            }
        }
        assert!(boxes(Crops::One, (500, 375), (224, 224)).is_empty());
        assert_eq!("144".parse::<Crops>(), Ok(Crops::All));
        assert!("12".parse::<Crops>().unwrap_err().contains("1, 10 and 144"));
    }

    #[test]
    fn ten_crops_are_the_corners_and_centre_of_the_256_scale() {
        let boxes = boxes(Crops::Ten, (500, 375), (224, 224));
        let scaled = (341, 256);
        assert!(boxes.iter().all(|b| b.scaled == scaled && b.region[2..] == [224, 224]));
        let corners: Vec<[u32; 2]> =
            boxes.iter().step_by(2).map(|b| [b.region[0], b.region[1]]).collect();
        assert_eq!(corners, [[0, 0], [117, 0], [117, 32], [0, 32], [58, 16]]);
        assert!(boxes.iter().enumerate().all(|(i, b)| b.mirror == (i % 2 == 1)));
    }

    #[test]
    fn all_crops_take_three_squares_of_four_scales() {
        let boxes = boxes(Crops::All, (375, 500), (224, 224));
        let scales: Vec<(u32, u32)> = boxes.iter().step_by(36).map(|b| b.scaled).collect();
        assert_eq!(scales, [(256, 341), (288, 384), (320, 427), (352, 469)]);
        // The 352 scale of a portrait photo: the top, centre and bottom squares of 352.
        let last: Vec<&CropBox> = boxes[108..].iter().filter(|b| b.region[2] == 352).collect();
        let squares: Vec<[u32; 4]> = last.iter().step_by(2).map(|b| b.region).collect();
        assert_eq!(squares, [[0, 0, 352, 352], [0, 58, 352, 352], [0, 117, 352, 352]]);
        // The crops of the bottom square: corners, centre, whole, each then mirrored.
        let bottom: Vec<[u32; 4]> = boxes[132..].iter().step_by(2).map(|b| b.region).collect();
        let expected = [
            [0, 117, 224, 224],
            [128, 117, 224, 224],
            [128, 245, 224, 224],
            [0, 245, 224, 224],
            [64, 181, 224, 224],
            [0, 117, 352, 352],
        ];
        assert_eq!(bottom, expected);
    }
}
