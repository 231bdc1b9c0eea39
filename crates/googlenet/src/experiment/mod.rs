//! Experiments that answer questions about the Inception module with the real network: does
//! the order of the concatenated branches matter ([`concat_order`]), and is any input channel
//! of a 1x1 convolution thrown away ([`channel_use`]).

pub mod ablate;
pub mod channel_use;
pub mod concat_order;
pub mod weights;
