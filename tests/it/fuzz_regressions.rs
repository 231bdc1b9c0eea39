//! The inputs that reproduced a real finding of the fuzzers and the sweeps (`fuzz/regressions`),
//! one test per finding, each replayed through the binary: a bad model is one line and exit
//! code 1, a bad image that image's error and exit code 2, never a crash, a hang or a panic.
//! The fuzzers' seeds are tested in the library (`crates/googlenet/src/fuzz_seeds.rs`).

use crate::common::googlenet;

/// Classifies the bundled photo with the kept model input `file` and checks that it fails as
/// it loads, in one line ending in `expected`.
fn refused_model(file: &str, expected: &str) {
    let path = format!("fuzz/regressions/model/{file}");
    let output = googlenet().args(["classify", "assets/chelsea.png", "--model", &path]).output();
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{file}: {stderr}");
    assert!(stderr.trim_end().ends_with(expected), "{file}: {stderr}");
}

/// Classifies the kept image input `file` and checks that it is that image's error, `expected`.
fn refused_image(file: &str, expected: &str) {
    let path = format!("fuzz/regressions/decode/{file}");
    let output = googlenet().args(["classify", "--format", "jsonl", &path]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{file}: {stderr}");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["error"], expected, "{file}");
}

/// The refusal of a model that uses operator `op` at node `node`.
fn not_a_classifier(op: &str, node: &str) -> String {
    format!(
        "the model uses `{op}` (node `{node}`), which image classifiers do not; googlenet runs \
         convolutional and transformer image classifiers"
    )
}

/// One test per finding: its name, what it was, and each kept input with its error now.
macro_rules! findings {
    ($($(#[doc = $what:literal])+ $name:ident: $check:ident [$($file:literal => $expected:expr),+ $(,)?];)+) => {
        $(
            $(#[doc = $what])+
            #[test]
            fn $name() {
                $($check($file, &$expected);)+
            }
        )+
    };
}

findings! {
    /// The loader's first minute: a graph output that no node writes panicked in tract.
    graph_output_no_node_writes: refused_model [
        "crash-003d3cfd17d89c31ae216f873ebbb85fdcfae684" =>
            "the model is malformed (tract: no entry found for key)",
    ];
    /// A `DFT` of a `Size` node's scalar: tract's shape rule looped over a wrapped rank (7.7 GB).
    dft_of_a_scalar: refused_model [
        "oom-e9e056c572172c63ff6f72acab8a2d7287005067" => not_a_classifier("Size", "r1"),
    ];
    /// An input of height 0 reshaped to a `GRU` batch of about 2^56: GBs and seconds each.
    zero_height_input_to_a_gru: refused_model [
        "oom-5500006a83c6f0eed58bbbf235d0fed60f7caaec" => not_a_classifier("GRU", "t3"),
        "oom-571e475798b506bf2336c2f31c024778a944de11" => not_a_classifier("GRU", "t3"),
        "oom-7edcec6e1dd9b00a656fdf387ce45e907d512372" => not_a_classifier("GRU", "t3"),
        "oom-a02513e5aabcc5374ca018dcda0b30cd18b7721d" => not_a_classifier("GRU", "t3"),
        "slow-unit-3e8f11fe0e7e101170286581fb4316b82482d007" => not_a_classifier("GRU", "t3"),
        "slow-unit-46195ebf2dd17f60890e072a40201c060b17ae99" => not_a_classifier("GRU", "t3"),
        "slow-unit-4773d822640e55459d991b0f6682a3da342c5a0b" => not_a_classifier("GRU", "t3"),
        "slow-unit-7a29146f5e1ca81226fbe1ca87a8a8af45f20ae3" => not_a_classifier("GRU", "t3"),
        "slow-unit-9c3bb75f415f7b60fee39e14298f24b00f26a014" => not_a_classifier("GRU", "t3"),
        "slow-unit-d5d729d58b120ea96d108b20e6cdba717e7082c2" => not_a_classifier("GRU", "t3"),
        "slow-unit-e96b23d181fcfe9aba2fb6e804d90eecc65497d2" => not_a_classifier("GRU", "t3"),
        "slow-unit-f143ee004107a246a52d5ead1e73d7a202026b6a" => not_a_classifier("GRU", "t3"),
    ];
    /// A `LayerNormalization` axis below minus the rank: tract counted up to a wrapped
    /// `axis + rank` and hung.
    layer_normalization_axis: refused_model [
        "timeout-ffd1ae8e5bf012a57891671395fe7bda93cd2e8d" =>
            "LayerNormalization: axis -34359738369 is out of range for an input of rank 4",
    ];
    /// The same wrapped axis in `RMSNormalization` and `SimplifiedLayerNormalization`: hangs.
    rms_normalization_axis: refused_model [
        "timeout-96b7396617d61a6b342df189d33e563086c26c9c" => not_a_classifier("RMSNormalization", "t1"),
        "timeout-5ce6faffca610a2c86ce684da8d6a5b8b0d64ef1" =>
            not_a_classifier("SimplifiedLayerNormalization", "t1"),
    ];
    /// A `MelWeightMatrix` of 24 trillion mel bins: a `Vec` that aborted the process.
    mel_weight_matrix_count: refused_model [
        "crash-d10372f22df7efad5767421b60a719be0e953610" => not_a_classifier("MelWeightMatrix", "t1"),
    ];
    /// A `BlackmanWindow` of 939 million values: 40 s and 7.3 GB before a later check.
    blackman_window_size: refused_model [
        "oom-bc66031701675f35ab65027b2c7e08a34b8e0a01" => not_a_classifier("BlackmanWindow", "t1"),
    ];
    /// A `OneHot` axis of 2^40 (a hang) and an empty `OneHot` depth (a segmentation fault).
    one_hot_axis_and_depth: refused_model [
        "timeout-1f038fdb25dd039353d960b4006ec85766428c2e" => not_a_classifier("OneHot", "t1"),
        "crash-a99d414913e415b8d6c5d0970e2f610ac6b86865" => not_a_classifier("OneHot", "t1"),
    ];
    /// `DFT` lengths of 2^40 (opsets 17 and 20) collected into a `Vec`, and an opset-20 axis of
    /// 2^48 used as a shape index, fed by an unknown operator: aborts.
    dft_length_and_axis: refused_model [
        "crash-4e4b6bd9b997205948d2b612b8e24eb75b53ea8f" => not_a_classifier("DFT", "t3"),
        "crash-a66c7dfb51c4ec8646418239a554f097cf7b1ba9" => not_a_classifier("DFT", "t3"),
        "crash-7de43883ba664c336494314605beb80fdc2392ff" => not_a_classifier("Resiape", "t1"),
    ];
    /// A `MatMulNBits` of N 8192 x K 2^20 weights collected into a `Vec`: an abort.
    matmul_n_bits_size: refused_model [
        "crash-b54a6126f01f648cedcf9893671826a0611725e1" =>
            not_a_classifier("com.microsoft.MatMulNBits", "t1"),
    ];
    /// A `TreeEnsembleClassifier` leaf of class 10^8 of 2 (a segmentation fault), and one whose
    /// root is its own child (a hang): tract's tree walk is unchecked.
    tree_ensemble_class_and_cycle: refused_model [
        "crash-4f312527a57bf58af4b30f64ce5c21be008ba5dd" =>
            not_a_classifier("ai.onnx.ml.TreeEnsembleClassifier", "t3"),
        "timeout-852416bb0fd4e46ce6bcb5a9a9ccaf0e0e804b9d" =>
            not_a_classifier("ai.onnx.ml.TreeEnsembleClassifier", "t3"),
    ];
    /// Pool kernel sides and paddings of 2^31: one entry per kernel position, aborts and hangs.
    pool_windows: refused_model [
        "crash-8c3a0ee485f0d7bbcefe74551ffb7f8ed110694c" =>
            "MaxPool: kernel_shape 2147483648 is out of range (1 to 4096)",
        "timeout-7f1b7f43a0ede9ea75ebe6c138192f2dbcb0862b" =>
            "AveragePool: kernel_shape 2147483648 is out of range (1 to 4096)",
        "timeout-d45514f2c5df342886e406692ada36383d175521" =>
            "AveragePool: pads 2147483648 is out of range (0 to 4096)",
    ];
    /// A `Transpose` whose `perm` names an axis twice: pushed until an allocation aborted.
    transpose_perm: refused_model [
        "crash-1821a357ff2ebdbb669ed3e26c3b3e89a6d023fd" =>
            "Transpose: perm [0, 0, 0, 0] is not a permutation of the axes",
    ];
    /// A `Scan` of 2^31 scan inputs: a `Vec` that aborted.
    scan_inputs: refused_model [
        "crash-54a0161a62332d401ce73653461b25ea8cc5f32a" => not_a_classifier("Scan", "t3"),
    ];
    /// An empty `STFT` frame step and an empty `If` condition: scalars read past their storage,
    /// segmentation faults.
    empty_scalars: refused_model [
        "crash-096a5971baf8bda1552f339c480dc6fdaafa2048" => not_a_classifier("STFT", "t3"),
        "crash-450e4b9d55ffb7d7f75f601f6fbe709874f49b8f" =>
            not_a_classifier("If", "t4"),
    ];
    /// Rank-1 inputs (after a `NonZero`) to `BatchNormalization`, `AveragePool` and `MaxPool`,
    /// which read a channel axis past the shape: segmentation faults.
    rank_1_inputs_to_channel_operators: refused_model [
        "crash-1136c33770a5d44fba871d7db74400966e803ada" => not_a_classifier("NonZero", "where"),
        "crash-22af43f2fa62492df1aaa547c7690c9f599281eb" => not_a_classifier("NonZero", "where"),
        "crash-861c90a052c6480eec204f94afd6f7d4d3524008" => not_a_classifier("NonZero", "where"),
    ];
    /// Matrix products of a length known only as they ran, inside an `If`: a segmentation
    /// fault; in the main graph, a silent read past the weights.
    run_time_product_lengths: refused_model [
        "crash-2dcc9f3fca97705ae5e95700ba93e6d6ee602f9f" => not_a_classifier("If", "made"),
        "crash-62e9f8b5556b13fec577cf36311aaa5362a04569" => not_a_classifier("If", "made"),
        "crash-770841f8270f0fff0a0ed88f88b8bcd6277d1430" => not_a_classifier("If", "made"),
        "crash-ed07849f37e7311d912a3af3816cdb7afe5eafa6" => not_a_classifier("If", "made"),
    ];
    /// Products and element-wise operators whose lengths the facts know to disagree (a
    /// `MatMulInteger` of 0 columns, a `Pow` by an empty exponent): segmentation faults.
    lengths_known_to_disagree: refused_model [
        "crash-1feae0b69d3011955fd9eb49d734a2c839d511cc" =>
            not_a_classifier("NonZero", "length_where"),
        "crash-34999cf6884fb7f60d22e8062957ec1abfa6363f" =>
            not_a_classifier("NonZero", "length_where"),
        "crash-a4eb0960dce3c0e2663137292857cd2212eeb667" =>
            not_a_classifier("NonZero", "length_where"),
    ];
    /// A PNG palette of 703 bytes: png 0.18.1 panicked (exit code 101, the batch lost). With
    /// its CRCs corrected too, as a real file would have them.
    png_palette_of_partial_entries: refused_image [
        "crash-3516786986f68c0bb97260e56c799574a8b981e9" =>
            "malformed PNG (a palette of 703 bytes, not whole RGB entries)",
        "crash-3516786986f68c0bb97260e56c799574a8b981e9-crc-fixed" =>
            "malformed PNG (a palette of 703 bytes, not whole RGB entries)",
    ];
    /// A baseline JPEG of 200 scans and no end marker: 1.3-1.8 s to decode.
    jpeg_of_many_scans_cut_short: refused_image [
        "slow-unit-f53c3c8248465e2ddffb135e4bb98706df20e13e" =>
            "truncated JPEG (no end-of-image marker after the image data)",
    ];
}
