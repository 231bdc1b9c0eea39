//! Picks the fuzz corpus entries worth keeping as regression tests: for every distinct outcome
//! of an entry point (success, or an error message with its numbers blanked out), the smallest
//! input that produces it. `fuzz/README.md` says when to run it.
//!
//! `cargo run --release --example select_regressions -- decode|model CORPUS_DIR OUT_DIR`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use googlenet::model::Model;
use googlenet::preprocess::{Preprocess, Preset};

fn main() -> Result<()> {
    googlenet::guard::install_hook();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, corpus, out] = args.as_slice() else {
        bail!("usage: select_regressions decode|model CORPUS_DIR OUT_DIR");
    };
    let settings = Preprocess { max_pixels: 4_000_000, ..Preset::Caffe.settings(224, 224) };
    let outcome = |bytes: &[u8]| -> String {
        let result = match target.as_str() {
            "decode" => settings.tensor(bytes).map(|_| ()).map_err(anyhow::Error::from),
            _ => Model::from_bytes(bytes, 1).map(|_| ()),
        };
        match result {
            Ok(()) => "ok".to_owned(),
            Err(err) => googlenet::output::one_line(&err)
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect(),
        }
    };
    let mut smallest: BTreeMap<String, (usize, PathBuf)> = BTreeMap::new();
    for entry in std::fs::read_dir(corpus).with_context(|| format!("cannot read {corpus}"))? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        let key = outcome(&bytes);
        if smallest.get(&key).is_none_or(|(size, _)| bytes.len() < *size) {
            smallest.insert(key, (bytes.len(), path));
        }
    }
    std::fs::create_dir_all(out)?;
    for (key, (_, path)) in &smallest {
        let name = path.file_name().context("corpus entry without a name")?;
        std::fs::copy(path, PathBuf::from(out).join(name))?;
        println!("{key}");
    }
    eprintln!("{} outcomes kept in {out}", smallest.len());
    Ok(())
}
