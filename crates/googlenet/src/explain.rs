//! Occlusion sensitivity: which part of the photo the decision rests on. A patch of the mean
//! colour (zero after normalisation) slides over the network's input; the drop of the top
//! class's probability at each position, averaged over the patches covering a pixel, is the
//! map, drawn over the photo with a colour scale.

use anyhow::{ensure, Context, Result};
use image::{Rgb, RgbImage};
use rayon::prelude::*;
use tract_onnx::prelude::tract_ndarray::{Array2, Array3, ArrayViewMut, Axis, Dimension, Slice};

use crate::cancel::Cancel;
use crate::engine::Classifier;
use crate::error::{Error, Result as Outcome};
use crate::inputs::Input;
use crate::model::Model;

/// The occlusion map of one image.
#[derive(Debug, Clone)]
pub struct Occlusion {
    /// The class explained: the top class of the unoccluded image.
    pub class: usize,
    /// Its probability without occlusion.
    pub probability: f32,
    /// Mean drop of that probability over the patches covering each input pixel, `H x W`.
    pub(crate) map: Array2<f32>,
    /// The patch whose occlusion dropped the probability most: `(top, left, drop)` in input
    /// pixels.
    pub hottest: (usize, usize, f32),
    /// Side of the patch in input pixels.
    pub patch: usize,
}

/// A photo's occlusion map, drawn over it.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The map, in the network's input pixels.
    pub occlusion: Occlusion,
    /// The photo with the map blended over it and the colour scale along its bottom edge.
    pub heatmap: RgbImage,
    /// The part of the photo the network saw, `(left, top, width, height)` in photo pixels.
    pub region: (f64, f64, f64, f64),
}

impl Explanation {
    /// The heatmap as a PNG file's bytes.
    pub fn png(&self) -> Outcome<Vec<u8>> {
        let mut png = Vec::new();
        self.heatmap
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|err| Error::Image(format!("cannot encode the heatmap: {err}")))?;
        Ok(png)
    }

    /// The hottest patch as `[x0, y0, x1, y1]` in photo pixels.
    pub fn hottest_patch(&self) -> [u32; 4] {
        let (input_h, input_w) = self.occlusion.map.dim();
        let (left, top, width, height) = self.region;
        let to_photo = |x: usize, y: usize| {
            let px = left + x as f64 * width / input_w as f64;
            let py = top + y as f64 * height / input_h as f64;
            (px.round() as u32, py.round() as u32)
        };
        let (y, x, _) = self.occlusion.hottest;
        let patch = self.occlusion.patch;
        let (x0, y0) = to_photo(x, y);
        let (x1, y1) = to_photo(x + patch, y + patch);
        [x0, y0, x1, y1]
    }
}

/// Reads and decodes `photo`, maps how occluding each part of it changes the top class of
/// `classifier` with `patch`-pixel squares every `stride` pixels of the network's input, and
/// draws the map over the photo (over a copy shrunk to 16,384 pixels on its longer side, for a
/// photo larger than that: the heatmap and the hottest patch are in that copy's pixels). The occluded copies run on the classifier's worker threads,
/// a batch at a time; `cancel` stops the work between batches ([`Error::Cancelled`]).
pub fn explain(
    classifier: &Classifier,
    photo: &Input,
    (patch, stride): (usize, usize),
    cancel: &Cancel,
) -> Outcome<Explanation> {
    let runner = classifier.runner();
    let settings = runner.preprocess();
    let side = settings.width.min(settings.height) as usize;
    if !(1..=side).contains(&patch) {
        return Err(Error::setting("patch", format!("must be 1 to {side} pixels")));
    }
    if stride == 0 {
        return Err(Error::setting("stride", "must be at least 1 pixel"));
    }
    let image = |err: crate::preprocess::PreprocessError| Error::image(&err.into());
    let photo = settings.decode(&runner.bytes(photo)?).map_err(image)?;
    let photo = within_heatmap(photo).map_err(image)?;
    let tensor = settings.normalise(&settings.resize(&photo).map_err(image)?);
    let threads = classifier.threads();
    let occlusion = occlusion(runner.model(), &tensor, (patch, stride), (threads, cancel))
        .map_err(|err| match err.downcast_ref::<Error>() {
            Some(Error::Cancelled) => Error::Cancelled,
            _ => Error::model(&err),
        })?;
    let region = settings.region(photo.width(), photo.height());
    let heatmap = render(&photo, &occlusion.map, region, occlusion.hottest.2);
    Ok(Explanation { occlusion, heatmap, region })
}

/// The longest side of a heatmap: 16,384 pixels (at most 768 MiB square, and the photos that
/// are larger are scans and panoramas).
const MAX_HEATMAP_SIDE: u32 = 16_384;

/// `photo`, or for one with a side over [`MAX_HEATMAP_SIDE`] a copy shrunk to that side, as
/// near its shape as whole pixels allow, which the map is made from and drawn over: the heatmap
/// of a photo of any shape within the pixel limit is bounded.
fn within_heatmap(photo: RgbImage) -> Result<RgbImage, crate::preprocess::PreprocessError> {
    let (w, h) = photo.dimensions();
    let longest = w.max(h);
    if longest <= MAX_HEATMAP_SIDE {
        return Ok(photo);
    }
    let scale = f64::from(MAX_HEATMAP_SIDE) / f64::from(longest);
    let side = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, MAX_HEATMAP_SIDE);
    crate::preprocess::resize_exact(&photo, None, side(w), side(h))
}

/// Occludes `image` (`3 x H x W`, normalised) with `patch`-pixel squares every `stride` pixels
/// and runs all of them through `model`, `model.batch_size` at a time on `threads` threads,
/// until `cancel` stops it ([`Error::Cancelled`]) between batches.
fn occlusion(
    model: &Model,
    image: &Array3<f32>,
    (patch, stride): (usize, usize),
    (threads, cancel): (usize, &Cancel),
) -> Result<Occlusion> {
    let (_, h, w) = image.dim();
    ensure!(patch >= 1 && patch <= h.min(w), "the patch must be 1 to {} pixels", h.min(w));
    ensure!(stride >= 1, "the stride must be at least 1 pixel");
    let base = model.run(std::slice::from_ref(image))?;
    let base = base.first().context("no probabilities")?;
    let (class, &probability) = base
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .context("the model scores no classes")?;
    let positions: Vec<(usize, usize)> = offsets(h, patch, stride)
        .flat_map(|y| offsets(w, patch, stride).map(move |x| (y, x)))
        .collect();
    let occluded_run = |chunk: &[(usize, usize)]| -> Result<Vec<f32>> {
        cancel.check()?;
        let occluded: Vec<Array3<f32>> = chunk
            .iter()
            .map(|&(y, x)| {
                let mut copy = image.clone();
                square(copy.view_mut(), (y, x), patch).fill(0.0);
                copy
            })
            .collect();
        let batch = model.run(&occluded)?;
        Ok(batch.iter().map(|p| probability - p.get(class).unwrap_or(&0.0)).collect())
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let drops: Vec<f32> = pool
        .install(|| {
            positions
                .par_chunks(model.batch_size.max(1))
                .map(occluded_run)
                .collect::<Result<Vec<_>>>()
        })?
        .concat();
    let mut sum = Array2::<f32>::zeros((h, w));
    let mut count = Array2::<f32>::zeros((h, w));
    for (&(y, x), &drop) in positions.iter().zip(&drops) {
        square(sum.view_mut(), (y, x), patch).mapv_inplace(|v| v + drop);
        square(count.view_mut(), (y, x), patch).mapv_inplace(|v| v + 1.0);
    }
    let map = sum / count.mapv(|c| c.max(1.0));
    let hottest = positions
        .iter()
        .zip(&drops)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(&(y, x), &drop)| (y, x, drop))
        .context("no patch positions")?;
    Ok(Occlusion { class, probability, map, hottest, patch })
}

/// Patch offsets along a side of `size` pixels: every `stride`, and the last one flush with
/// the edge.
fn offsets(size: usize, patch: usize, stride: usize) -> impl Iterator<Item = usize> + Clone {
    let last = size - patch;
    (0..=last).step_by(stride).chain((!last.is_multiple_of(stride)).then_some(last))
}

/// The colour of `value` (0..=1) on a dark-to-bright scale: black, purple, red, orange, pale
/// yellow.
#[allow(clippy::indexing_slicing, reason = "i + 1 < STOPS.len() and c < 3 by construction")]
fn colour(value: f32) -> Rgb<u8> {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [87.0, 16.0, 110.0],
        [188.0, 55.0, 84.0],
        [249.0, 142.0, 9.0],
        [252.0, 255.0, 164.0],
    ];
    let at = value.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (at.floor() as usize).min(STOPS.len() - 2);
    let t = at - i as f32;
    let mix = |c: usize| (STOPS[i][c] * (1.0 - t) + STOPS[i + 1][c] * t).round() as u8;
    Rgb([mix(0), mix(1), mix(2)])
}

/// `photo` with the map blended over it and a colour scale along its bottom edge (left: no
/// drop; right: `scale`, the largest drop). `region` is the part of the photo the network saw,
/// `(left, top, width, height)` in photo pixels; the rest is left as it is.
pub(crate) fn render(
    photo: &RgbImage,
    map: &Array2<f32>,
    region: (f64, f64, f64, f64),
    scale: f32,
) -> RgbImage {
    let (mh, mw) = map.dim();
    let (left, top, width, height) = region;
    let mut out = photo.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let mx = ((f64::from(x) + 0.5 - left) / width * mw as f64).floor();
        let my = ((f64::from(y) + 0.5 - top) / height * mh as f64).floor();
        if mx < 0.0 || my < 0.0 || mx >= mw as f64 || my >= mh as f64 {
            continue;
        }
        let value = if scale > 0.0 { map[[my as usize, mx as usize]] / scale } else { 0.0 };
        *pixel = blend(*pixel, colour(value), 0.6);
    }
    let (w, h) = out.dimensions();
    let bar = (h / 25).max(4).min(h);
    for y in h - bar..h {
        for x in 0..w {
            let edge = y == h - bar;
            let value = f64::from(x) / f64::from(w.saturating_sub(1).max(1));
            out.put_pixel(x, y, if edge { Rgb([255, 255, 255]) } else { colour(value as f32) });
        }
    }
    out
}

fn blend(under: Rgb<u8>, over: Rgb<u8>, alpha: f32) -> Rgb<u8> {
    let mix = |a: u8, b: u8| (f32::from(a) * (1.0 - alpha) + f32::from(b) * alpha).round() as u8;
    Rgb([mix(under[0], over[0]), mix(under[1], over[1]), mix(under[2], over[2])])
}

/// The `patch` x `patch` square at `(y, x)` of the last two axes of `view` (ndarray's `s!`
/// macro allows `unsafe_code`, which this crate forbids).
fn square<D: Dimension>(
    mut view: ArrayViewMut<'_, f32, D>,
    (y, x): (usize, usize),
    patch: usize,
) -> ArrayViewMut<'_, f32, D> {
    let rank = view.ndim();
    view.slice_axis_inplace(Axis(rank - 2), Slice::from(y..y + patch));
    view.slice_axis_inplace(Axis(rank - 1), Slice::from(x..x + patch));
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_the_side_to_its_edge() {
        assert_eq!(offsets(224, 32, 16).collect::<Vec<_>>().last(), Some(&192));
        assert_eq!(offsets(10, 4, 4).collect::<Vec<_>>(), [0, 4, 6]);
        assert_eq!(offsets(4, 4, 2).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn the_colour_scale_runs_dark_to_bright() {
        assert_eq!(colour(0.0), Rgb([0, 0, 4]));
        assert_eq!(colour(1.0), Rgb([252, 255, 164]));
        let brightness = |v: f32| colour(v).0.iter().map(|&c| u32::from(c)).sum::<u32>();
        assert!((0..10).all(|i| brightness(i as f32 / 10.0) < brightness((i + 1) as f32 / 10.0)));
    }

    #[test]
    fn render_keeps_the_size_and_draws_the_scale() {
        let photo = RgbImage::from_pixel(40, 30, Rgb([100, 100, 100]));
        let mut map = Array2::zeros((4, 4));
        map[[0, 0]] = 1.0;
        let out = render(&photo, &map, (0.0, 0.0, 40.0, 30.0), 1.0);
        assert_eq!(out.dimensions(), (40, 30));
        assert_eq!(*out.get_pixel(2, 2), blend(Rgb([100, 100, 100]), colour(1.0), 0.6));
        assert_eq!(*out.get_pixel(30, 10), blend(Rgb([100, 100, 100]), colour(0.0), 0.6));
        assert_eq!(*out.get_pixel(39, 29), colour(1.0), "the scale ends bright on the right");
    }
}
