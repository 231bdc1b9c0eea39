//! Reading and writing the float weights and integer attributes of ONNX nodes.

use anyhow::{ensure, Result};
use tract_onnx::pb::TensorProto;

const FLOAT: i32 = 1;

/// The values of a float tensor, stored either as `float_data` or as little-endian `raw_data`.
pub fn floats(tensor: &TensorProto) -> Result<Vec<f32>> {
    ensure!(tensor.data_type == FLOAT, "{}: not a float tensor", tensor.name);
    if tensor.raw_data.is_empty() {
        return Ok(tensor.float_data.clone());
    }
    ensure!(
        tensor.raw_data.len().is_multiple_of(4),
        "{}: raw data is not whole floats",
        tensor.name
    );
    Ok(tensor
        .raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect())
}

/// Replaces the values of a float tensor, in the same storage it used.
pub(crate) fn set_floats(tensor: &mut TensorProto, values: Vec<f32>) {
    if tensor.raw_data.is_empty() {
        tensor.float_data = values;
    } else {
        tensor.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_in_both_storages() {
        let mut raw =
            TensorProto { data_type: FLOAT, raw_data: vec![0, 0, 128, 63], ..Default::default() };
        assert_eq!(floats(&raw).unwrap(), [1.0]);
        set_floats(&mut raw, vec![2.0]);
        assert_eq!(raw.raw_data, 2.0f32.to_le_bytes());
        let mut listed =
            TensorProto { data_type: FLOAT, float_data: vec![3.0], ..Default::default() };
        set_floats(&mut listed, vec![4.0, 5.0]);
        assert_eq!(floats(&listed).unwrap(), [4.0, 5.0]);
        let ints = TensorProto { data_type: 7, ..Default::default() };
        assert!(floats(&ints).is_err());
    }
}
