//! `--precision` and the kernel path override, `GOOGLENET_ISA`: int8 and bf16 against f32 on
//! the labelled samples, bf16 on the default path (or its fallback where the CPU has no bf16
//! kernel), and the errors of a
//! path that is not there.

use crate::common::{googlenet, kernel_paths};

const SAMPLES: &str = "../shared/data/imagenet-samples";

/// Each sample's top class, in order, and whether it is the sample's true class (the synset
/// that starts its file name).
fn top_classes(precision: &str, isa: &str) -> Vec<(String, bool)> {
    let output = googlenet()
        .env("GOOGLENET_ISA", isa)
        .args(["classify", "--quiet", "--format", "jsonl", "-k", "1", "--precision", precision])
        .arg(SAMPLES)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let records: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 100);
    let top = |record: &serde_json::Value| {
        let synset = record["predictions"][0]["synset"].as_str().unwrap().to_owned();
        let name = record["path"].as_str().unwrap().rsplit('/').next().unwrap();
        let correct = name.starts_with(&format!("{synset}_"));
        (synset, correct)
    };
    records.iter().map(top).collect()
}

#[test]
fn int8_and_bf16_agree_with_f32_on_the_samples_on_every_kernel_path() {
    let f32 = top_classes("f32", "tract");
    let correct = |classes: &[(String, bool)]| classes.iter().filter(|(_, right)| *right).count();
    // A forced path runs bf16 whether or not it multiplies bf16 in hardware.
    let paths = kernel_paths();
    let runs = ["int8", "bf16"].into_iter().flat_map(|p| paths.iter().map(move |&i| (p, i)));
    for (precision, isa) in runs {
        let lower = top_classes(precision, isa);
        let agree = lower.iter().zip(&f32).filter(|(a, b)| a.0 == b.0).count();
        println!(
            "{precision} on {isa}: top-1 agreement with f32 {agree}/100, correct {} against {}",
            correct(&lower),
            correct(&f32)
        );
        assert!(agree >= 95, "{precision} on {isa}: top-1 agrees with f32 on {agree} of 100");
        assert!(
            correct(&lower) + 2 >= correct(&f32),
            "{precision} on {isa}: {} correct against f32's {}",
            correct(&lower),
            correct(&f32)
        );
    }
}

#[test]
fn verbose_names_the_precision_and_the_kernel_path() {
    for precision in ["int8", "bf16"] {
        let output = googlenet()
            .env("GOOGLENET_ISA", "avx2")
            .args(["classify", "--verbose", "--quiet", "--precision", precision])
            .arg("assets/chelsea.png")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        let line = format!("precision: {precision} on the avx2 kernel path");
        assert!(stderr.contains(&line), "{stderr}");
    }
}

#[test]
fn bf16_runs_where_the_cpu_multiplies_it_and_elsewhere_at_f32_with_a_one_line_note() {
    let output = googlenet()
        .args(["classify", "--verbose", "--precision", "bf16", "--format", "jsonl"])
        .arg("assets/chelsea.png")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("precision bf16")).collect();
    // The default path is the fastest this CPU runs.
    let fastest = kernel_paths()[0];
    if ["amx", "avx512bf16"].contains(&fastest) {
        assert!(notes.is_empty(), "{stderr}");
        assert!(stderr.contains(&format!("precision: bf16 on the {fastest} kernel path")));
    } else {
        assert_eq!(notes.len(), 1, "{stderr}");
        let note = "googlenet: precision bf16: no bf16 kernel for this CPU";
        assert!(notes[0].starts_with(note), "{stderr}");
        assert!(notes[0].ends_with("; running at f32"), "{stderr}");
        assert!(stderr.contains(&format!("precision: f32 on the {fastest} kernel path")));
    }
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["predictions"][0]["name"], "Egyptian cat");
}

#[test]
fn a_kernel_path_that_is_not_there_is_a_one_line_error() {
    let cases = [
        ("avx9", "f32", "googlenet: error: GOOGLENET_ISA is `avx9`, no kernel path: this build has amx, avx512bf16, avx512, avx2 and tract"),
        ("tract", "int8", "googlenet: error: --precision int8 runs on the project's kernels, not GOOGLENET_ISA=tract's f32 operators"),
        ("tract", "bf16", "googlenet: error: --precision bf16 runs on the project's kernels, not GOOGLENET_ISA=tract's f32 operators"),
    ];
    for (isa, precision, expected) in cases {
        let output = googlenet()
            .env("GOOGLENET_ISA", isa)
            .args(["classify", "--precision", precision, "assets/chelsea.png"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim_end(), expected, "GOOGLENET_ISA={isa} --precision {precision}");
    }
}
