//! Finding the images to process: files as given, folders walked for image files ([`Walk`]),
//! globs, lists of paths ([`read_list`]), shards ([`shard`]). Folders that cannot be read,
//! symlink loops and symlinks to nothing become [`Input::Broken`] entries so that they are
//! reported, not fatal.
//!
//! ```
//! use googlenet::inputs::{shard, Shard, Walk};
//!
//! let walk = Walk::new(true, &["*.png".to_owned()], &[])?;
//! let inputs = walk.discover(&[concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets").into()]);
//! let first_half = shard(inputs, "1/2".parse::<Shard>()?);
//! assert_eq!(first_half.len(), 1); // chelsea.png of chelsea.png and coffee.png
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use crate::download::{is_url, redact};
use crate::error::{Error, Result};
use crate::files::{read_at_most, read_up_to, Size};
use crate::preprocess::flatten;

/// File extensions, lower-case, that a folder walk takes as images.
pub(crate) const IMAGE_EXTENSIONS: &[&str] =
    &["jpg", "jpeg", "jpe", "jfif", "png", "gif", "bmp", "dib", "tif", "tiff", "webp"];

/// One thing to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file to classify.
    Image(PathBuf),
    /// One image's bytes on standard input, named `-`.
    Stdin,
    /// An image to download, named by its `http://` or `https://` URL.
    Url {
        /// The URL.
        url: String,
        /// The URL as it is shown, its password hidden ([`crate::redact_url`]).
        shown: String,
    },
    /// An image sent to `googlenet serve`, named as its request names it.
    Upload {
        /// The multipart file name, or `-` for a raw request body.
        name: String,
        /// The image file's bytes.
        bytes: Arc<[u8]>,
    },
    /// An image already decoded, as an array of pixels (from the Python package), named `name`.
    Pixels {
        /// How its record names it.
        name: String,
        /// Its pixels.
        image: Arc<RgbImage>,
    },
    /// A place the walk could not enter, and why.
    Broken {
        /// The folder or link concerned.
        path: PathBuf,
        /// A one-line reason.
        reason: String,
    },
}

impl Input {
    /// The input a command-line argument names: `-` for stdin, a URL, or a file.
    pub fn from_arg(arg: impl AsRef<Path>) -> Input {
        let arg = arg.as_ref();
        match arg.to_str() {
            Some("-") => Input::Stdin,
            Some(url) if is_url(url) => Input::Url { url: url.to_owned(), shown: redact(url) },
            _ => Input::Image(arg.to_owned()),
        }
    }

    /// An image of `height` x `width` pixels of `channels` 8-bit values each, row by row in
    /// `values`: grey (1), RGB (3) or RGBA (4, composited over white as a decoded file's
    /// alpha is), named `name`; or why those values are not such an image.
    pub fn pixels(
        name: &str,
        values: &[u8],
        (height, width, channels): (usize, usize, usize),
    ) -> Result<Input> {
        let bad = |problem: String| Error::Image(problem);
        let pixels = height.checked_mul(width).filter(|&n| n > 0);
        let pixels = pixels.ok_or_else(|| bad(format!("an image of {height}x{width} pixels")))?;
        if pixels.checked_mul(channels) != Some(values.len()) {
            return Err(bad(format!(
                "{} values for {height}x{width} pixels of {channels} channels",
                values.len()
            )));
        }
        let (w, h) = (
            u32::try_from(width).map_err(|_| bad(format!("{width} pixels wide")))?,
            u32::try_from(height).map_err(|_| bad(format!("{height} pixels high")))?,
        );
        let values = values.to_vec();
        let image = match channels {
            1 => GrayImage::from_raw(w, h, values).map(DynamicImage::ImageLuma8),
            3 => RgbImage::from_raw(w, h, values).map(DynamicImage::ImageRgb8),
            4 => RgbaImage::from_raw(w, h, values).map(DynamicImage::ImageRgba8),
            _ => return Err(bad(format!("{channels} channels; expected 1, 3 or 4"))),
        }
        .ok_or_else(|| bad("the values do not fill the image".to_owned()))?;
        Ok(Input::Pixels { name: name.to_owned(), image: Arc::new(flatten(image)) })
    }

    /// Which kind of input this is, in the order that decides which of two with one path a
    /// walk keeps.
    fn kind(&self) -> u8 {
        match self {
            Input::Image(_) => 0,
            Input::Stdin => 1,
            Input::Url { .. } => 2,
            Input::Upload { .. } => 3,
            Input::Pixels { .. } => 4,
            Input::Broken { .. } => 5,
        }
    }

    /// The path this input concerns, as its record names it: the file, the URL, or `-`.
    pub fn path(&self) -> &Path {
        match self {
            Input::Image(path) | Input::Broken { path, .. } => path,
            Input::Stdin => Path::new("-"),
            Input::Url { shown: name, .. }
            | Input::Upload { name, .. }
            | Input::Pixels { name, .. } => Path::new(name),
        }
    }
}

/// How folders are walked and paths filtered.
#[derive(Debug, Default)]
pub struct Walk {
    /// Descend into sub-folders.
    pub recursive: bool,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Walk {
    /// A walk that keeps paths matching any of `include` (all, when empty) and none of
    /// `exclude`.
    pub fn new(recursive: bool, include: &[String], exclude: &[String]) -> Result<Walk> {
        let (include, exclude) = (glob_set(include, "include")?, glob_set(exclude, "exclude")?);
        Ok(Walk { recursive, include, exclude })
    }

    /// Every input under `roots`, sorted by path, without duplicates. Files given directly are
    /// taken whatever their extension; files found in folders only with an image extension.
    /// `-` is stdin and a root that starts with `http://` or `https://` a URL, whatever the
    /// file system holds.
    pub fn discover(&self, roots: &[PathBuf]) -> Vec<Input> {
        let mut inputs: Vec<Input> = Vec::new();
        for root in roots {
            match Input::from_arg(root) {
                Input::Image(path) if path.is_dir() => self.walk(&path, &mut inputs),
                input if self.wanted(input.path()) => inputs.push(input),
                _ => {}
            }
        }
        inputs.sort_by(|a, b| a.path().cmp(b.path()).then_with(|| a.kind().cmp(&b.kind())));
        inputs.dedup_by(|a, b| a.path() == b.path());
        inputs
    }

    fn walk(&self, root: &Path, inputs: &mut Vec<Input>) {
        let depth = if self.recursive { usize::MAX } else { 1 };
        for entry in WalkDir::new(root).follow_links(true).min_depth(1).max_depth(depth) {
            match entry {
                Ok(entry) if entry.file_type().is_file() => {
                    let path = entry.into_path();
                    if has_image_extension(&path) && self.wanted(&path) {
                        inputs.push(Input::Image(path));
                    }
                }
                Ok(_) => {}
                Err(err) => inputs.push(broken(root, &err)),
            }
        }
    }

    fn wanted(&self, path: &Path) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(path))
            && !self.exclude.as_ref().is_some_and(|set| set.is_match(path))
    }
}

fn broken(root: &Path, err: &walkdir::Error) -> Input {
    let path = err.path().unwrap_or(root).to_owned();
    let reason = match (err.loop_ancestor(), err.io_error(), std::fs::read_link(&path)) {
        (Some(ancestor), ..) => format!("symlink loop back to {}", ancestor.display()),
        // Followed, a symlink to nothing fails as its target's metadata is read.
        (None, Some(io), Ok(target)) if io.kind() == std::io::ErrorKind::NotFound => {
            format!("broken symlink: {} does not exist", target.display())
        }
        (None, Some(io), _) => format!("cannot read folder: {io}"),
        (None, None, _) => err.to_string(),
    };
    Input::Broken { path, reason }
}

/// The globs of `patterns`, the setting `setting`; `None` when there are none.
fn glob_set(patterns: &[String], setting: &'static str) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let bad = |err: globset::Error| Error::setting(setting, format!("has a bad glob: {err}"));
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(Glob::new(pattern).map_err(bad)?);
    }
    Ok(Some(builder.build().map_err(bad)?))
}

/// Whether the file name ends in a known image extension, in any case.
pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// `K/N`: the K-th (1-based) of N slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, 1..=n.
    pub k: usize,
    /// How many slices.
    pub n: usize,
}

/// `K/N`, such as `2/8`.
impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Shard> {
        let bad = |problem: String| Error::setting("shard", problem);
        let (k, n) = text.split_once('/').ok_or_else(|| bad("must be K/N, e.g. 2/8".into()))?;
        let parse = |v: &str| {
            v.trim().parse::<usize>().map_err(|_| bad(format!("`{v}` is not a whole number")))
        };
        let (k, n) = (parse(k)?, parse(n)?);
        if k == 0 || n == 0 || k > n {
            return Err(bad(format!("{k}/{n}: K must be between 1 and N")));
        }
        Ok(Shard { k, n })
    }
}

/// The inputs of one shard: every N-th input, starting at the K-th. Shards are disjoint and
/// together hold every input, given the same sorted list.
pub fn shard(inputs: Vec<Input>, shard: Shard) -> Vec<Input> {
    inputs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % shard.n == shard.k - 1)
        .map(|(_, x)| x)
        .collect()
}

/// The largest list of paths [`read_list`] reads: ten million paths of a hundred bytes.
const MAX_LIST_BYTES: u64 = 1 << 30;

/// The paths of a list, one a line, read from the file `list` or, when it is `-`, from
/// standard input. Blank lines are skipped; a line is taken byte for byte, so a name that is
/// not UTF-8 (as `find` prints it) is found.
pub fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let name = list.display();
    let bytes = if list == Path::new("-") {
        read_up_to(std::io::stdin().lock(), MAX_LIST_BYTES, 0)
    } else {
        read_at_most(list, MAX_LIST_BYTES)
    };
    let bytes = bytes
        .map_err(|err| Error::File(format!("cannot read {name}: {err}")))?
        .ok_or_else(|| Error::File(format!("{name} is over {}", Size(MAX_LIST_BYTES))))?;
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| path_from_bytes(line).map_err(|err| Error::File(format!("{name}: {err}"))))
        .collect()
}

/// A path from the bytes of a line: any bytes on Unix, UTF-8 elsewhere.
#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> std::result::Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// A path from the bytes of a line: any bytes on Unix, UTF-8 elsewhere.
#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> std::result::Result<PathBuf, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "a path that is not UTF-8".to_owned())?;
    Ok(PathBuf::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_reject() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { k: 2, n: 8 }));
        for bad in ["0/3", "4/3", "1/0", "3", "a/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in ["b.JPG", "a.png", "notes.txt", "sub/c.jpeg", "sub/deeper/d.webp"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        dir
    }

    fn names(inputs: &[Input], root: &Path) -> Vec<String> {
        inputs
            .iter()
            .map(|i| i.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn folders_are_walked_sorted_by_extension() {
        let dir = tree();
        let root = dir.path();
        let all = Walk::new(true, &[], &[]).unwrap().discover(&[root.to_owned()]);
        assert_eq!(names(&all, root), ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/d.webp"]);
        let top = Walk::new(false, &[], &[]).unwrap().discover(&[root.to_owned()]);
        assert_eq!(names(&top, root), ["a.png", "b.JPG"]);
    }

    #[test]
    fn files_given_are_kept_and_duplicates_dropped() {
        let dir = tree();
        let root = dir.path();
        let notes = root.join("notes.txt");
        let inputs =
            Walk::new(true, &[], &[]).unwrap().discover(&[notes.clone(), root.to_owned(), notes]);
        assert_eq!(inputs.len(), 5);
        assert!(inputs.contains(&Input::Image(root.join("notes.txt"))));
    }

    #[test]
    fn globs_include_and_exclude() {
        let dir = tree();
        let root = dir.path();
        let walk =
            Walk::new(true, &["*.png".into(), "**/sub/**".into()], &["*.webp".into()]).unwrap();
        assert_eq!(names(&walk.discover(&[root.to_owned()]), root), ["a.png", "sub/c.jpeg"]);
        assert!(Walk::new(true, &["a[".into()], &[]).is_err());
    }

    #[test]
    fn symlink_loops_are_broken_inputs() {
        let (_dir, inputs) = walked_with_link("sub/deeper/loop", "sub");
        let broken = broken(&inputs);
        assert_eq!(broken.len(), 1, "{inputs:?}");
        assert!(broken[0].1.contains("symlink loop"), "{broken:?}");
        assert_eq!(inputs.len(), 5);
    }

    #[test]
    fn a_symlink_to_nothing_is_a_broken_input_that_names_its_target() {
        let (dir, inputs) = walked_with_link("sub/link.jpg", "gone.jpg");
        let expected =
            format!("broken symlink: {} does not exist", dir.path().join("gone.jpg").display());
        let broken = broken(&inputs);
        assert_eq!(broken.len(), 1, "{inputs:?}");
        assert!(broken[0].0.ends_with("sub/link.jpg"));
        assert_eq!(broken[0].1, expected);
    }

    /// The test tree with a symlink at `link` to `target` (both under its root), walked.
    fn walked_with_link(link: &str, target: &str) -> (tempfile::TempDir, Vec<Input>) {
        let dir = tree();
        let root = dir.path();
        std::os::unix::fs::symlink(root.join(target), root.join(link)).unwrap();
        let inputs = Walk::new(true, &[], &[]).unwrap().discover(&[root.to_owned()]);
        (dir, inputs)
    }

    /// The path and reason of each broken input.
    fn broken(inputs: &[Input]) -> Vec<(&Path, &str)> {
        inputs
            .iter()
            .filter_map(|input| match input {
                Input::Broken { path, reason } => Some((path.as_path(), reason.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn shards_are_disjoint_and_complete() {
        let inputs: Vec<Input> =
            (0..10).map(|i| Input::Image(PathBuf::from(format!("{i}")))).collect();
        let mut union: Vec<Input> =
            (1..=3).flat_map(|k| shard(inputs.clone(), Shard { k, n: 3 })).collect();
        assert_eq!(shard(inputs.clone(), Shard { k: 1, n: 3 }).len(), 4);
        union.sort_by(|a, b| a.path().cmp(b.path()));
        let mut expected = inputs;
        expected.sort_by(|a, b| a.path().cmp(b.path()));
        assert_eq!(union, expected);
    }
}
