//! Image decoding and preprocessing into the network's input tensor.
//!
//! An image file is decoded by content (not by extension), turned upright by its EXIF
//! orientation, flattened to 8-bit RGB (alpha composited over white), resized to the model's
//! input size and normalised into a `3 x H x W` float array in the model's channel order.

use std::borrow::Cow;
use std::io::Cursor;
use std::path::Path;

use fast_image_resize::images::{Image as ResizeImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageFormat, ImageReader, RgbImage};
use tract_onnx::prelude::tract_ndarray::Array3;

use crate::files::{read_at_most, read_up_to, Size};
use crate::guard::{self, Breach};

/// Why an image could not be turned into a tensor.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be opened or read.
    #[error("cannot read")]
    Io(#[from] std::io::Error),
    /// The file holds more bytes than any image within the pixel limit can take.
    #[error("file over {}, more than an image within max_pixels can take", Size(*.limit))]
    FileTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is empty.
    #[error("empty file")]
    Empty,
    /// The content is not in any image format this build knows.
    #[error("not an image (unrecognised format)")]
    UnknownFormat,
    /// A JPEG whose data stops before its end-of-image marker.
    #[error("truncated JPEG (no end-of-image marker after the image data)")]
    TruncatedJpeg,
    /// A JPEG with more scans than any encoder writes: each one is decoded over the whole
    /// image, so a few kilobytes of them cost seconds.
    #[error("JPEG with {scans} scans, over the limit of {limit}")]
    TooManyScans {
        /// Scans in the file.
        scans: usize,
        /// The limit.
        limit: usize,
    },
    /// A TIFF that stores as text a tag the decoder reads as a number: no encoder writes one.
    #[error("malformed TIFF (tag {tag}, a number, is stored as text)")]
    TiffTextTag {
        /// The tag's number.
        tag: u16,
    },
    /// A PNG palette whose length is not a whole number of RGB entries: no encoder writes one,
    /// and png 0.18.1 panics on it.
    #[error("malformed PNG (a palette of {len} bytes, not whole RGB entries)")]
    PngPalette {
        /// The palette's length in bytes.
        len: u32,
    },
    /// The bytes are not an image this build can decode.
    #[error("cannot decode")]
    Decode(#[from] image::ImageError),
    /// A decoder panicked on the file: a bug in the decoder, contained to this file.
    #[error("cannot decode (the decoder panicked: {0})")]
    DecoderPanicked(String),
    /// Decoding asked for one buffer over the allocation limit.
    #[error("decoding needs a buffer of {}, over the limit of {}", Size(*.bytes), Size(guard::MAX_ALLOCATION_BYTES))]
    BufferTooLarge {
        /// The size asked for.
        bytes: u64,
    },
    /// The image is larger than the decoding limit (a decompression bomb, or a huge scan).
    #[error("{width}x{height} pixels is over the limit of {limit} (max_pixels)")]
    TooLarge {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
        /// The limit in pixels.
        limit: u64,
    },
    /// Scaled for the crops (its shorter side to 256 pixels or more), the photo would be more
    /// pixels than the crops may take: one far longer than it is wide.
    #[error("{width}x{height} pixels is too long and thin for the crops: scaled to a shorter side of {short} it would be {scaled} pixels, over the limit of {limit}")]
    TooThinForCrops {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The shorter side it would be scaled to.
        short: u32,
        /// The pixels it would have.
        scaled: u64,
        /// The most a scaled photo may have.
        limit: u64,
    },
    /// The resizer refused the image (zero-sized, for instance).
    #[error("cannot resize: {0}")]
    Resize(String),
}

/// How the image is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Resize straight to the input size, ignoring the aspect ratio.
    Squash,
    /// Resize so that the input size is 224/256 of the short side, then take the centre.
    Crop,
}

/// The order of the colour channels in the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (Caffe models).
    Bgr,
}

/// A photo as an input gives it.
#[derive(Debug, Clone, Copy)]
pub enum Photo<'a> {
    /// An image file's bytes, decoded by their content.
    File(&'a [u8]),
    /// Pixels already decoded.
    Pixels(&'a RgbImage),
}

/// A named set of preprocessing settings matching how a family of models was trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// BVLC Caffe models: BGR, 0..255 minus the ImageNet mean, squashed to the input size.
    Caffe,
    /// torchvision models: RGB, scaled to 0..1, ImageNet mean and std, centre crop.
    Torchvision,
}

/// The default limit on decoded pixels: Pillow's decompression-bomb error threshold, about
/// 179 megapixels, far above any camera's photo.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// Bytes a pixel takes in the largest layout the decoders hold (32-bit float RGBA, which a TIFF
/// can hold): what sizes both the decoders' allocation limit and the largest file read, from
/// the pixel limit.
const MAX_BYTES_PER_PIXEL: u64 = 16;

/// The largest pixel limit (`max_pixels`; a larger one is taken as this): an image of that
/// many pixels in the largest layout fills one allocation of the guard's limit (4 GiB). The
/// decoders allocate the whole image in a `Vec`, which aborts the process if the guard refuses
/// it; their own allocation limit does not cover that buffer.
pub const LARGEST_MAX_PIXELS: u64 = guard::MAX_ALLOCATION_BYTES / MAX_BYTES_PER_PIXEL;

/// Room for what a file holds besides its pixels (metadata, thumbnails, more GIF frames) and
/// the least the decoders may allocate.
const HEADROOM_BYTES: u64 = 64 << 20;

/// The ImageNet mean in RGB order, in 0..255 pixel units.
const IMAGENET_MEAN: [f32; 3] = [123.68, 116.779, 103.939];

impl Preset {
    /// The preset's name on the command line and in `GET /v1/model`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Caffe => "caffe",
            Preset::Torchvision => "torchvision",
        }
    }

    /// The preset named `name` ([`Preset::name`]).
    pub fn from_name(name: &str) -> Option<Preset> {
        [Preset::Caffe, Preset::Torchvision].into_iter().find(|preset| preset.name() == name)
    }

    /// The preset's settings for a model input of `width` x `height` pixels.
    pub fn settings(self, width: u32, height: u32) -> Preprocess {
        match self {
            Preset::Caffe => Preprocess {
                width,
                height,
                resize: ResizeMode::Squash,
                order: ChannelOrder::Bgr,
                mean: IMAGENET_MEAN,
                std: [1.0; 3],
                max_pixels: DEFAULT_MAX_PIXELS,
            },
            Preset::Torchvision => Preprocess {
                width,
                height,
                resize: ResizeMode::Crop,
                order: ChannelOrder::Rgb,
                mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
                std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
                max_pixels: DEFAULT_MAX_PIXELS,
            },
        }
    }
}

/// Everything needed to turn an image into the model's input.
///
/// Each channel value is `(pixel - mean) / std`, with the pixel in 0..255 and `mean` and
/// `std` given in RGB order in the same 0..255 units.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// How the image is fitted to `width` x `height`.
    pub resize: ResizeMode,
    /// Channel order of the tensor.
    pub order: ChannelOrder,
    /// Per-channel mean, RGB order, 0..255 units.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, RGB order, 0..255 units.
    pub std: [f32; 3],
    /// Images announcing more pixels than this (or than [`LARGEST_MAX_PIXELS`]) are refused
    /// before they are decoded.
    pub max_pixels: u64,
}

impl Preprocess {
    /// Decodes the image at `path` and turns it into a `3 x H x W` tensor. A large JPEG is
    /// decoded at a reduced scale (1/2, 1/4 or 1/8, in the DCT) that still leaves at least
    /// twice the pixels the resize keeps in each direction.
    pub fn load(&self, path: &Path) -> Result<Array3<f32>, PreprocessError> {
        self.tensor(&self.read(path)?)
    }

    /// [`Preprocess::load`] for an image file's bytes.
    pub fn tensor(&self, bytes: &[u8]) -> Result<Array3<f32>, PreprocessError> {
        Ok(self.normalise(&self.input_image(Photo::File(bytes))?))
    }

    /// A photo decoded and fitted to the input size, not yet normalised.
    pub(crate) fn input_image(&self, photo: Photo<'_>) -> Result<RgbImage, PreprocessError> {
        let factor = match self.resize {
            ResizeMode::Squash => 2.0,
            ResizeMode::Crop => 2.0 * 256.0 / 224.0,
        };
        let side = (f64::from(self.width.max(self.height)) * factor).ceil() as u32;
        self.resize(self.photo_at_least(photo, side)?.as_ref())
    }

    /// `photo`'s pixels: a file decoded as [`Preprocess::decode_at_least`] decodes it, or the
    /// pixels given, refused like a file's over `max_pixels`.
    pub(crate) fn photo_at_least<'a>(
        &self,
        photo: Photo<'a>,
        side: u32,
    ) -> Result<Cow<'a, RgbImage>, PreprocessError> {
        match photo {
            Photo::File(bytes) => self.decode_at_least(bytes, side).map(Cow::Owned),
            Photo::Pixels(image) => {
                let (width, height) = image.dimensions();
                let limit = self.pixel_limit();
                if u64::from(width) * u64::from(height) > limit {
                    return Err(PreprocessError::TooLarge { width, height, limit });
                }
                Ok(Cow::Borrowed(image))
            }
        }
    }

    /// Decodes an image file's bytes by their content (whatever the name says) at full size,
    /// applies the EXIF orientation and flattens them to 8-bit RGB, refusing more than
    /// `max_pixels`.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
        self.decode_at_least(bytes, u32::MAX)
    }

    /// [`Preprocess::decode`], but a large JPEG is decoded at a reduced DCT scale whose sides
    /// are both at least `side` pixels.
    pub(crate) fn decode_at_least(
        &self,
        bytes: &[u8],
        side: u32,
    ) -> Result<RgbImage, PreprocessError> {
        decode_at_least(bytes, side, self.pixel_limit())
    }

    /// The most pixels an image may have: `max_pixels`, up to [`LARGEST_MAX_PIXELS`].
    fn pixel_limit(&self) -> u64 {
        self.max_pixels.min(LARGEST_MAX_PIXELS)
    }

    /// The most bytes an image file within `max_pixels` can hold.
    pub(crate) fn byte_limit(&self) -> u64 {
        self.pixel_limit() * MAX_BYTES_PER_PIXEL + HEADROOM_BYTES
    }

    /// Reads an image file whole, refusing one over `Preprocess::byte_limit` without reading
    /// past that.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, PreprocessError> {
        let limit = self.byte_limit();
        read_at_most(path, limit)?.ok_or(PreprocessError::FileTooLarge { limit })
    }

    /// Reads one image file's bytes from standard input, refusing more than
    /// [`Preprocess::byte_limit`].
    pub(crate) fn read_stdin(&self) -> Result<Vec<u8>, PreprocessError> {
        let limit = self.byte_limit();
        read_up_to(std::io::stdin().lock(), limit, 0)?
            .ok_or(PreprocessError::FileTooLarge { limit })
    }

    /// Fits `image` to the input size by the configured resize mode (bilinear, antialiased).
    pub fn resize(&self, image: &RgbImage) -> Result<RgbImage, PreprocessError> {
        let region = match self.resize {
            ResizeMode::Squash => None,
            ResizeMode::Crop => Some(self.centre_crop(image.width(), image.height())),
        };
        resize_exact(image, region, self.width, self.height)
    }

    /// The part of a `src_w x src_h` image that the input shows: `(left, top, width, height)`
    /// in image pixels.
    pub(crate) fn region(&self, src_w: u32, src_h: u32) -> (f64, f64, f64, f64) {
        match self.resize {
            ResizeMode::Squash => (0.0, 0.0, f64::from(src_w), f64::from(src_h)),
            ResizeMode::Crop => self.centre_crop(src_w, src_h),
        }
    }

    /// The source region that, scaled so that the input covers 224/256 of it, gives the centre
    /// crop: `(left, top, width, height)` in source pixels.
    fn centre_crop(&self, src_w: u32, src_h: u32) -> (f64, f64, f64, f64) {
        let (src_w, src_h) = (f64::from(src_w), f64::from(src_h));
        let (dst_w, dst_h) = (f64::from(self.width), f64::from(self.height));
        let scale = (dst_w / src_w).max(dst_h / src_h) * 256.0 / 224.0;
        let (width, height) = ((dst_w / scale).min(src_w), (dst_h / scale).min(src_h));
        ((src_w - width) / 2.0, (src_h - height) / 2.0, width, height)
    }

    /// Normalises an image already at the input size into a `3 x H x W` tensor.
    #[allow(clippy::indexing_slicing, reason = "channel indices are 0..3; x, y from the image")]
    pub fn normalise(&self, image: &RgbImage) -> Array3<f32> {
        let channels: [usize; 3] = match self.order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let (w, h) = image.dimensions();
        let mut tensor = Array3::<f32>::zeros((3, h as usize, w as usize));
        for (x, y, pixel) in image.enumerate_pixels() {
            for (plane, &rgb) in channels.iter().enumerate() {
                let value = (f32::from(pixel.0[rgb]) - self.mean[rgb]) / self.std[rgb];
                tensor[[plane, y as usize, x as usize]] = value;
            }
        }
        tensor
    }
}

/// The part `region` of `image` (`(left, top, width, height)` in its pixels; all of it when
/// `None`) resized to `width` x `height`, bilinear and antialiased as Pillow resizes. Whatever
/// the source's shape, the work holds little more than the source and the result: a side of
/// more than 16,384 pixels is first divided by a whole factor, by the mean of each block. A
/// result over the allocation limit is refused.
pub fn resize_exact(
    image: &RgbImage,
    region: Option<(f64, f64, f64, f64)>,
    width: u32,
    height: u32,
) -> Result<RgbImage, PreprocessError> {
    if region.is_none() {
        if let Some(narrower) = shrink_long_side(image, width, height) {
            return resize_exact(&narrower, None, width, height);
        }
    }
    convolve(image, region, width, height)
}

/// The longest side a bilinear pass reads: the resizer's coefficient tables grow with the
/// source's side (about 16 bytes a pixel when it shrinks), and its first pass keeps the
/// source's width at the output's height, so a photo of millions of pixels on one side would
/// need gigabytes.
const MAX_RESIZE_SIDE: u32 = 16_384;

/// For a source with a side over [`MAX_RESIZE_SIDE`] (and over the output's), the source with
/// that side divided by a whole factor, each output pixel the mean of the block of source pixels
/// it stands for: a pass with no tables that holds only its output. `None` for any other source.
fn shrink_long_side(image: &RgbImage, width: u32, height: u32) -> Option<RgbImage> {
    let (w, h) = image.dimensions();
    let factor = |side: u32, out: u32| match side > MAX_RESIZE_SIDE && side > out {
        true => side.div_ceil(MAX_RESIZE_SIDE.max(out)),
        false => 1,
    };
    let (fx, fy) = (factor(w, width), factor(h, height));
    ((fx, fy) != (1, 1)).then(|| box_reduce(image, fx, fy))
}

/// `image` with each block of `fx` x `fy` pixels (fewer at the right and bottom edges) made one
/// pixel, their mean.
fn box_reduce(image: &RgbImage, fx: u32, fy: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (out_w, out_h) = (w.div_ceil(fx), h.div_ceil(fy));
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let (xs, ys) = (x * fx..((x + 1) * fx).min(w), y * fy..((y + 1) * fy).min(h));
        let mut sums = [0u64; 3];
        for sy in ys.clone() {
            for sx in xs.clone() {
                let pixel = image.get_pixel(sx, sy);
                sums.iter_mut().zip(pixel.0).for_each(|(sum, value)| *sum += u64::from(value));
            }
        }
        let count = u64::from(xs.end - xs.start) * u64::from(ys.end - ys.start);
        image::Rgb(sums.map(|sum| ((sum + count / 2) / count.max(1)) as u8))
    })
}

/// One resize of `image` (or of `region` of it) to `width` x `height` by the bilinear filter.
fn convolve(
    image: &RgbImage,
    region: Option<(f64, f64, f64, f64)>,
    width: u32,
    height: u32,
) -> Result<RgbImage, PreprocessError> {
    let bytes = u64::from(width) * u64::from(height) * 3;
    if bytes > guard::MAX_ALLOCATION_BYTES {
        return Err(PreprocessError::BufferTooLarge { bytes });
    }
    let src = ImageRef::new(image.width(), image.height(), image.as_raw(), PixelType::U8x3)
        .map_err(|e| PreprocessError::Resize(e.to_string()))?;
    let mut dst = ResizeImage::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    let options = match region {
        Some((left, top, w, h)) => options.crop(left, top, w, h),
        None => options,
    };
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| PreprocessError::Resize(e.to_string()))?;
    RgbImage::from_raw(width, height, dst.into_vec())
        .ok_or_else(|| PreprocessError::Resize("resizer returned a short buffer".into()))
}

/// [`Preprocess::decode`], letting a JPEG be decoded at a reduced DCT scale as long as both
/// sides of the upright image keep at least `side` pixels, and refusing images over
/// `max_pixels` from their header, before anything is allocated for them. A decoder's panic,
/// or one allocation over the guard's limit, is this file's error (see [`guard::contain`]).
fn decode_at_least(bytes: &[u8], side: u32, max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    match guard::contain(|| decode_uncontained(bytes, side, max_pixels)) {
        Ok(result) => result,
        Err(Breach::Panicked(message)) => Err(PreprocessError::DecoderPanicked(message)),
        // Decoding runs under no ceiling, so only `TooLarge` refuses it.
        Err(Breach::TooLarge(bytes) | Breach::OverBudget(bytes)) => {
            Err(PreprocessError::BufferTooLarge { bytes })
        }
    }
}

/// [`decode_at_least`] without the guard against the decoders' panics and huge allocations.
fn decode_uncontained(
    bytes: &[u8],
    side: u32,
    max_pixels: u64,
) -> Result<RgbImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let format = reader.format().ok_or(PreprocessError::UnknownFormat)?;
    match format {
        ImageFormat::Jpeg => check_jpeg(bytes)?,
        ImageFormat::Tiff => check_tiff(bytes)?,
        ImageFormat::Png => check_png(bytes)?,
        _ => (),
    }
    reader.no_limits();
    let mut decoder = reader.into_decoder()?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(PreprocessError::TooLarge { width, height, limit: max_pixels });
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL).max(HEADROOM_BYTES));
    image::ImageDecoder::set_limits(&mut decoder, limits)?;
    let orientation = image::ImageDecoder::orientation(&mut decoder)?;
    let scaled = match format {
        ImageFormat::Jpeg => decode_jpeg_scaled(bytes, side),
        _ => None,
    };
    let mut image = match scaled {
        Some(image) => DynamicImage::ImageRgb8(image),
        None => DynamicImage::from_decoder(decoder)?,
    };
    image.apply_orientation(orientation);
    Ok(flatten(image))
}

/// A JPEG decoded at the smallest DCT scale whose sides are both at least `side` pixels, when
/// that scale is below 1 and the pixels are 8-bit gray or RGB; otherwise `None`, for the
/// full decoder to handle.
fn decode_jpeg_scaled(bytes: &[u8], side: u32) -> Option<RgbImage> {
    let side = u16::try_from(side).ok()?;
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    if info.width < side.saturating_mul(2) || info.height < side.saturating_mul(2) {
        return None;
    }
    // The decoder takes the smallest scale at which either side reaches its request: ask
    // for the short side only.
    let request = if info.width < info.height { (side, u16::MAX) } else { (u16::MAX, side) };
    let (width, height) = decoder.scale(request.0, request.1).ok()?;
    let pixels = decoder.decode().ok()?;
    let (width, height) = (u32::from(width), u32::from(height));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(width, height, pixels),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(width, height, pixels)
            .map(|g| DynamicImage::ImageLuma8(g).into_rgb8()),
        _ => None,
    }
}

/// Most scans a JPEG may hold. Encoders write one per component (sequential) or about ten
/// (progressive); the fuzzer found 36 kB files of 200 scans that took 1.5 s to decode.
const MAX_JPEG_SCANS: usize = 100;

/// Refuses a JPEG that lacks the end-of-image marker after its first scan (the decoder would
/// otherwise fill the missing part of a cut-off file with grey) or that holds more than
/// [`MAX_JPEG_SCANS`] scans before it. The marker segments before the first scan are skipped
/// by their lengths, so that a thumbnail inside the EXIF segment does not count; data after
/// the end marker (as in motion photos) does no harm; stray bytes between segments are skipped,
/// as the decoder skips them. Headers too broken to walk are left to the decoder.
fn check_jpeg(bytes: &[u8]) -> Result<(), PreprocessError> {
    const SOS: u8 = 0xDA;
    const EOI: u8 = 0xD9;
    let mut pos = 2;
    let scan = loop {
        let (Some(&byte), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return Ok(());
        };
        if byte != 0xFF {
            // Stray bytes between segments: the decoder skips them to the next marker.
            pos += 1;
            continue;
        }
        match marker {
            0xFF => pos += 1,
            0x01 | 0xD0..=0xD7 => pos += 2,
            SOS => break pos,
            _ => match bytes.get(pos + 2..pos + 4) {
                Some(&[hi, lo]) => pos += 2 + usize::from(u16::from_be_bytes([hi, lo])),
                _ => return Ok(()),
            },
        }
    };
    // Inside entropy-coded data a 0xFF byte is followed by 0 or a restart marker, so every
    // 0xFF 0xDA up to the end marker starts a scan.
    let data = bytes.get(scan..).unwrap_or_default();
    let end =
        data.windows(2).position(|w| w == [0xFF, EOI]).ok_or(PreprocessError::TruncatedJpeg)?;
    let scans =
        data.get(..end).unwrap_or_default().windows(2).filter(|w| *w == [0xFF, SOS]).count();
    if scans > MAX_JPEG_SCANS {
        return Err(PreprocessError::TooManyScans { scans, limit: MAX_JPEG_SCANS });
    }
    Ok(())
}

/// The TIFF tags that the decoders (tiff 0.11, image 0.25) read as numbers: subfile types,
/// geometry, samples, strips, tiles, colour map, sub-directories, JPEG tables, subsampling,
/// EXIF, ICC profile and GPS.
const TIFF_NUMBER_TAGS: [u16; 27] = [
    254, 255, 256, 257, 258, 259, 262, 273, 274, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
    330, 338, 339, 347, 530, 34665, 34675, 34853,
];

/// Refuses a TIFF (classic or BigTIFF) whose first directory stores one of
/// [`TIFF_NUMBER_TAGS`] as text (type ASCII). tiff 0.11.3 answers such a tag longer than its
/// buffer limit with a stray `dbg!` line on stderr before its error (found by fuzzing: a
/// 136-byte file). Headers too broken to walk are left to the decoder.
fn check_tiff(bytes: &[u8]) -> Result<(), PreprocessError> {
    const ASCII: u64 = 2;
    let big_endian = match bytes.get(..2) {
        Some(b"MM") => true,
        Some(b"II") => false,
        _ => return Ok(()),
    };
    let read = |pos: usize, len: usize| -> Option<u64> {
        let field = bytes.get(pos..pos.checked_add(len)?)?;
        let fold = |n: u64, &b: &u8| n << 8 | u64::from(b);
        Some(if big_endian { field.iter().fold(0, fold) } else { field.iter().rev().fold(0, fold) })
    };
    let (directory, count_len, entry_len) = match read(2, 2) {
        Some(42) => (read(4, 4), 2, 12),
        Some(43) => (read(8, 8), 8, 20),
        _ => return Ok(()),
    };
    let Some(directory) = directory.and_then(|at| usize::try_from(at).ok()) else {
        return Ok(());
    };
    let Some(count) = read(directory, count_len) else {
        return Ok(());
    };
    let first = directory + count_len;
    for entry in (0..count)
        .map_while(|i| first.checked_add(usize::try_from(i).ok()?.checked_mul(entry_len)?))
    {
        let (Some(tag), Some(kind)) = (read(entry, 2), read(entry + 2, 2)) else {
            break;
        };
        let tag = u16::try_from(tag).unwrap_or_default();
        if kind == ASCII && TIFF_NUMBER_TAGS.contains(&tag) {
            return Err(PreprocessError::TiffTextTag { tag });
        }
    }
    Ok(())
}

/// Refuses a PNG with a palette (`PLTE` chunk) whose length is not a multiple of 3: png 0.18.1
/// accepts any length from 3 to 768 and then panics expanding the last, partial entry (found by
/// fuzzing; image-rs/image-png#694). Chunks are walked by their lengths up to the end marker;
/// a walk that runs out of bytes is left to the decoder.
fn check_png(bytes: &[u8]) -> Result<(), PreprocessError> {
    let mut pos: usize = 8;
    while let Some(&[l0, l1, l2, l3, k0, k1, k2, k3]) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        match &[k0, k1, k2, k3] {
            b"PLTE" if len % 3 != 0 => return Err(PreprocessError::PngPalette { len }),
            b"IEND" => break,
            _ => (),
        }
        let Some(next) = usize::try_from(len).ok().and_then(|len| pos.checked_add(12 + len)) else {
            break;
        };
        pos = next;
    }
    Ok(())
}

/// 8-bit RGB, with any alpha channel composited over white.
pub(crate) fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white =
            |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a)) + 127) / 255) as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

#[cfg(test)]
#[path = "preprocess_tests.rs"]
mod decoding;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiffs_storing_a_number_tag_as_text_are_refused() {
        let mut tiff = Vec::new();
        let image = DynamicImage::ImageRgb8(RgbImage::new(3, 2));
        image.write_to(&mut Cursor::new(&mut tiff), ImageFormat::Tiff).unwrap();
        assert!(check_tiff(&tiff).is_ok());
        let directory = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
        let height = (directory + 2..tiff.len())
            .step_by(12)
            .find(|&e| tiff[e..e + 2] == 257u16.to_le_bytes())
            .unwrap();
        tiff[height + 2] = 2;
        assert!(matches!(check_tiff(&tiff), Err(PreprocessError::TiffTextTag { tag: 257 })));
        let big_endian_bigtiff =
            [b"MM\0\x2b\0\x08\0\0".as_slice(), &16u64.to_be_bytes(), &1u64.to_be_bytes()].concat();
        let with = |tag: u16| [big_endian_bigtiff.as_slice(), &tag.to_be_bytes(), &[0, 2]].concat();
        assert!(matches!(
            check_tiff(&with(34675)),
            Err(PreprocessError::TiffTextTag { tag: 34675 })
        ));
        assert!(check_tiff(&with(270)).is_ok(), "ImageDescription is text");
        assert!(check_tiff(&tiff[..10]).is_ok(), "headers too short to walk go to the decoder");
    }

    #[test]
    fn normalise_orders_channels_and_scales() {
        let image = RgbImage::from_pixel(2, 1, image::Rgb([10, 20, 30]));
        let caffe = Preset::Caffe.settings(2, 1);
        let t = caffe.normalise(&image);
        assert_eq!(t.shape(), &[3, 1, 2]);
        assert!((t[[0, 0, 1]] - (30.0 - 103.939)).abs() < 1e-5, "blue first");
        assert!((t[[2, 0, 0]] - (10.0 - 123.68)).abs() < 1e-5, "red last");
        let torch = Preset::Torchvision.settings(2, 1);
        let t = torch.normalise(&image);
        assert!((t[[0, 0, 0]] - (10.0 / 255.0 - 0.485) / 0.229).abs() < 1e-5);
    }

    #[test]
    fn centre_crop_takes_224_of_256_of_the_short_side() {
        let settings = Preset::Torchvision.settings(224, 224);
        let (left, top, width, height) = settings.centre_crop(512, 256);
        assert!((height - 224.0).abs() < 1e-9 && (width - 224.0).abs() < 1e-9);
        assert!((left - 144.0).abs() < 1e-9 && (top - 16.0).abs() < 1e-9);
    }

    #[test]
    fn resize_reaches_the_input_size_in_both_modes() {
        let image = RgbImage::from_pixel(300, 451, image::Rgb([200, 100, 50]));
        for preset in [Preset::Caffe, Preset::Torchvision] {
            let resized = preset.settings(224, 224).resize(&image).unwrap();
            assert_eq!(resized.dimensions(), (224, 224));
            assert_eq!(resized.get_pixel(100, 100).0, [200, 100, 50]);
        }
    }

    #[test]
    fn cut_jpegs_are_truncated_and_whole_ones_not() {
        let mut jpeg = Vec::new();
        let image = RgbImage::from_pixel(64, 64, image::Rgb([10, 200, 30]));
        image.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        assert!(check_jpeg(&jpeg).is_ok());
        let cut = check_jpeg(&jpeg[..jpeg.len() - 2]);
        assert!(matches!(cut, Err(PreprocessError::TruncatedJpeg)));
        let mut with_trailer = jpeg.clone();
        with_trailer.extend_from_slice(&[0xFF, 0xDA, 0, 0, 1, 2]);
        assert!(check_jpeg(&with_trailer).is_ok());
        assert!(check_jpeg(&jpeg[..20]).is_ok(), "headers too short to walk go to the decoder");
    }

    #[test]
    fn jpegs_with_hundreds_of_scans_are_refused() {
        let mut jpeg = Vec::new();
        let image = RgbImage::from_pixel(64, 64, image::Rgb([10, 200, 30]));
        image.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        // More scan headers before the end marker, as the fuzzer's slow inputs had.
        let with_scans = |extra: usize| {
            let mut more = jpeg[..jpeg.len() - 2].to_vec();
            for _ in 0..extra {
                more.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0]);
            }
            more.extend_from_slice(&[0xFF, 0xD9]);
            more
        };
        assert!(check_jpeg(&with_scans(MAX_JPEG_SCANS - 1)).is_ok());
        let refused = check_jpeg(&with_scans(MAX_JPEG_SCANS)).unwrap_err();
        assert_eq!(refused.to_string(), "JPEG with 101 scans, over the limit of 100");
    }

    #[test]
    fn large_jpegs_are_decoded_scaled_and_small_ones_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jpg");
        let image =
            RgbImage::from_fn(1000, 800, |x, y| image::Rgb([(x / 4) as u8, (y / 4) as u8, 90]));
        image.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let at_least = |side| decode_at_least(&bytes, side, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(at_least(224).dimensions(), (500, 400), "1/2 scale");
        assert_eq!(at_least(100).dimensions(), (125, 100), "1/8 scale");
        assert_eq!(at_least(450).dimensions(), (1000, 800), "whole");
        let settings = Preset::Caffe.settings(224, 224);
        let scaled = settings.resize(&at_least(448)).unwrap();
        let whole = settings.resize(&settings.decode(&bytes).unwrap()).unwrap();
        let diff = scaled.as_raw().iter().zip(whole.as_raw()).map(|(a, b)| a.abs_diff(*b) as u32);
        assert!(diff.max().unwrap() <= 3, "scaled decoding changes the input little");
    }

    #[test]
    fn files_larger_than_the_pixel_limit_allows_are_not_read() {
        let settings = Preprocess { max_pixels: 1000, ..Preset::Caffe.settings(224, 224) };
        let limit = 1000 * MAX_BYTES_PER_PIXEL + HEADROOM_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let sparse = dir.path().join("sparse.jpg");
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(limit + 1).unwrap();
        let refused = settings.load(&sparse).unwrap_err();
        assert!(matches!(refused, PreprocessError::FileTooLarge { limit: l } if l == limit));
        assert_eq!(
            refused.to_string(),
            "file over 64 MiB, more than an image within max_pixels can take"
        );
        file.set_len(limit).unwrap();
        assert!(matches!(settings.load(&sparse), Err(PreprocessError::UnknownFormat)));
    }

    /// A PNG chunk with its length and CRC.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = !0u32;
        for &byte in kind.iter().chain(data) {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        let length = u32::try_from(data.len()).unwrap().to_be_bytes();
        [&length[..], kind, data, &(!crc).to_be_bytes()].concat()
    }

    /// A PNG of `width` x `height` pixels of colour type `color` (8-bit samples): the
    /// signature, the header, `chunks` and the end marker.
    fn png_file(width: u32, height: u32, color: u8, chunks: &[Vec<u8>]) -> Vec<u8> {
        let header = [&width.to_be_bytes()[..], &height.to_be_bytes(), &[8, color, 0, 0, 0]];
        let head = [b"\x89PNG\r\n\x1a\n".to_vec(), chunk(b"IHDR", &header.concat())];
        [&head[..], chunks, &[chunk(b"IEND", &[])]].concat().concat()
    }

    #[test]
    fn huge_headers_are_refused_before_decoding() {
        // A valid PNG header announcing 100000 x 100000 RGB pixels, and a scrap of data.
        let png = png_file(100_000, 100_000, 2, &[chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00])]);
        let err = Preset::Caffe.settings(224, 224).decode(&png).unwrap_err();
        assert!(
            matches!(err, PreprocessError::TooLarge { width: 100_000, height: 100_000, .. }),
            "{err}: {:?}",
            std::error::Error::source(&err)
        );
        assert_eq!(
            err.to_string(),
            "100000x100000 pixels is over the limit of 178956970 (max_pixels)"
        );
        let mut small = Vec::new();
        let image = DynamicImage::ImageRgb8(RgbImage::new(40, 30));
        image.write_to(&mut Cursor::new(&mut small), ImageFormat::Png).unwrap();
        assert!(matches!(
            decode_at_least(&small, u32::MAX, 1000),
            Err(PreprocessError::TooLarge { width: 40, height: 30, limit: 1000 })
        ));
        assert!(decode_at_least(&small, u32::MAX, 1200).is_ok());
    }

    #[test]
    fn palettes_of_partial_entries_are_refused_before_the_decoder_panics_on_them() {
        // One scanline, compressed: filter type 0, palette index 0.
        let data = [0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01];
        let with_palette =
            |palette: &[u8]| png_file(1, 1, 3, &[chunk(b"PLTE", palette), chunk(b"IDAT", &data)]);
        let whole = decode_at_least(&with_palette(&[10, 20, 30, 40, 50, 60]), 224, 1000).unwrap();
        assert_eq!(whole.get_pixel(0, 0).0, [10, 20, 30]);
        let partial = with_palette(&[10, 20, 30, 40]);
        let refused = decode_at_least(&partial, 224, 1000).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "malformed PNG (a palette of 4 bytes, not whole RGB entries)"
        );
    }

    #[test]
    fn alpha_is_composited_over_white() {
        let rgba = image::RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 0]));
        assert_eq!(flatten(DynamicImage::ImageRgba8(rgba)).get_pixel(0, 0).0, [255, 255, 255]);
        let opaque = image::RgbaImage::from_pixel(1, 1, image::Rgba([9, 8, 7, 255]));
        assert_eq!(flatten(DynamicImage::ImageRgba8(opaque)).get_pixel(0, 0).0, [9, 8, 7]);
    }
}
