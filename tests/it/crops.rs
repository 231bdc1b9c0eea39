//! `--crops` through the real binary: one crop is the plain run, and the crops of a photo that
//! looks the same everywhere average to what one crop gives.

use crate::common::{classify_records, samples, shared_model};

/// The probabilities of every class for each path, in input order.
fn probabilities(args: &[&str]) -> Vec<Vec<f64>> {
    let model = shared_model();
    let fixed = ["-k", "1000", "--model", model.to_str().unwrap()];
    classify_records(fixed.iter().chain(args))
        .into_iter()
        .map(|record| {
            let mut by_index = vec![0.0; 1000];
            for p in record["predictions"].as_array().unwrap() {
                by_index[p["index"].as_u64().unwrap() as usize] =
                    p["probability"].as_f64().unwrap();
            }
            by_index
        })
        .collect()
}

#[test]
fn one_crop_is_the_plain_run() {
    let photos: Vec<String> =
        samples().iter().step_by(20).map(|p| p.to_str().unwrap().to_owned()).collect();
    let photos: Vec<&str> = photos.iter().map(String::as_str).collect();
    let plain = probabilities(&photos);
    assert_eq!(probabilities(&[&["--crops", "1"], &photos[..]].concat()), plain);
    let ten = probabilities(&[&["--crops", "10"], &photos[..]].concat());
    assert_ne!(ten, plain, "ten crops see other parts of the photos");
}

#[test]
fn the_crops_of_a_uniform_photo_average_to_one_crop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grey.png");
    image::RgbImage::from_pixel(400, 300, image::Rgb([90, 140, 200])).save(&path).unwrap();
    let path = path.to_str().unwrap();
    let one = probabilities(&[path]).remove(0);
    for crops in ["10", "144"] {
        let many = probabilities(&["--crops", crops, "--batch-size", "8", path]).remove(0);
        let largest = one.iter().zip(&many).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(largest < 1e-5, "{crops} crops: {largest}");
    }
}
