//! Signature verification against the reference's own signed test data.

use std::path::PathBuf;

use bmap::signature::{self, Error, Keyring};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/reference-test-data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn keyring() -> Keyring {
    let mut keyring = Keyring::new();
    keyring
        .add(&data("gnupg/pubring.kbx"))
        .expect("the keybox reads");
    assert_eq!(keyring.len(), 1, "the test keybox holds one key");
    keyring
}

const KEY: &str = "927FF9746434704C5774BE648D49DFB1163BDFB4";

#[test]
fn valid_detached_signature_from_an_expired_key_made_while_it_was_valid() {
    let bmap = data("test.image.bmap.v2.0");
    let verified = signature::verify_detached(
        &bmap,
        &data("signatures/test.image.bmap.v2.0.valid-sig"),
        &keyring(),
    )
    .expect("good signature");
    assert!(verified.matches(KEY), "{verified:?}");
    assert!(!verified.user_id.is_empty());
}

#[test]
fn signature_by_a_key_not_in_the_keyring_is_refused() {
    let bmap = data("test.image.bmap.v2.0");
    let err = signature::verify_detached(
        &bmap,
        &data("signatures/test.image.bmap.v2.0.sig-by-wrong-key"),
        &keyring(),
    )
    .expect_err("unknown key");
    assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
}

#[test]
fn valid_signature_over_another_bmap_is_bad() {
    let other = data("test.image.bmap.v1.4");
    let err = signature::verify_detached(
        &other,
        &data("signatures/test.image.bmap.v2.0.valid-sig"),
        &keyring(),
    )
    .expect_err("wrong data");
    assert!(matches!(err, Error::Bad { .. }), "{err}");
}

#[test]
fn clearsigned_bmap_verifies_and_yields_the_exact_bmap() {
    let asc = data("signatures/test.image.bmap.v2.0.asc");
    assert!(signature::is_clearsigned(&asc));
    let (verified, text) =
        signature::verify_clearsigned(&asc, &keyring()).expect("good clearsigned bmap");
    assert!(verified.matches(KEY));
    assert_eq!(
        text,
        data("test.image.bmap.v2.0"),
        "the signed text is the bmap, byte for byte"
    );
    let parsed = bmap::format::parse(&text).expect("and it parses, self-checksum included");
    assert_eq!(parsed.bmap.ranges().len(), 48);
    assert_eq!(signature::clearsigned_text(&asc).expect("text"), text);
}

#[test]
fn clearsigned_bmap_edited_inside_the_signed_text_is_bad() {
    let asc = String::from_utf8(data("signatures/test.image.bmap.v2.0.asc")).expect("text");
    let edited = asc.replacen("198-199", "198-200", 1);
    assert_ne!(edited, asc);
    let err = signature::verify_clearsigned(edited.as_bytes(), &keyring()).expect_err("edited");
    assert!(matches!(err, Error::Bad { .. }), "{err}");
}
