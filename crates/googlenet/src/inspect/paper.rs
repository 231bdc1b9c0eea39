//! The parameter and operation figures printed in Table 1 of Szegedy et al., "Going deeper
//! with convolutions" (2015, arXiv:1409.4842), for the module table's comparison with the paper. They are the
//! paper's rounded numbers, shown beside the ones counted from the model, never used as results.

/// (stage, output size, params, ops) for the rows of Table 1 that have figures.
const TABLE_1: &[(&str, &str, &str, &str)] = &[
    ("convolution", "112x112x64", "2.7K", "34M"),
    ("convolution", "56x56x192", "112K", "360M"),
    ("inception (3a)", "28x28x256", "159K", "128M"),
    ("inception (3b)", "28x28x480", "380K", "304M"),
    ("inception (4a)", "14x14x512", "364K", "73M"),
    ("inception (4b)", "14x14x512", "437K", "88M"),
    ("inception (4c)", "14x14x512", "463K", "100M"),
    ("inception (4d)", "14x14x528", "580K", "119M"),
    ("inception (4e)", "14x14x832", "840K", "170M"),
    ("inception (5a)", "7x7x832", "1072K", "54M"),
    ("inception (5b)", "7x7x1024", "1388K", "71M"),
    ("linear", "1x1x1000", "1000K", "1M"),
];

/// The paper's params and ops for a stage, matched by its name and output size.
pub(crate) fn figures(stage: &str, output: &str) -> Option<(&'static str, &'static str)> {
    TABLE_1.iter().find(|row| row.0 == stage && row.1 == output).map(|row| (row.2, row.3))
}
