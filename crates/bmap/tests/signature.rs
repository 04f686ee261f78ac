//! Signature verdicts of the library, against keys and signatures made by the real gpg
//! at test time (`test_support::gpg`), with gpgv as the oracle; and, when
//! `../shared/conformance` is beside the repository, against the reference's own signed
//! test data.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bmap::signature::{self, Date, Error, Keyring, Options, State, Verified};
use test_support::gpg::{self, Case, Expect, Gpg, Gpgv};
use test_support::read;

/// Some data to sign.
const DATA: &[u8] = b"<bmap version=\"2.0\">not really a bmap, but signed bytes</bmap>\n";

/// A test's directory with `data` (the signed bytes) in it.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("bmap-signature-")
        .tempdir()
        .expect("temporary directory");
    fs::write(dir.path().join("data"), DATA).expect("write data");
    dir
}

fn keyring_of(files: &[&Path]) -> Keyring {
    let mut keyring = Keyring::new();
    for file in files {
        keyring.add(&read(file)).expect("the keyring reads");
    }
    keyring
}

fn verify(data: &[u8], sig: &Path, keyring: &Keyring) -> Result<Verified, Error> {
    signature::verify_detached(data, &read(sig), keyring, &Options::default())
}

/// Checks the library's verdict on `case` against what it must be.
#[track_caller]
fn assert_verdict(case: &Case, verdict: &Result<Verified, Error>) {
    let name = case.name;
    let expected = match &case.expect {
        Expect::Good => {
            let verified = verdict.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(verified.signer, case.signer, "{name}");
            assert_eq!(verified.primary, case.primary, "{name}");
            return;
        }
        Expect::KeyExpired { key, on } => State::KeyExpired {
            key: key.clone(),
            on: Date(*on),
        },
        Expect::KeyRevoked { key, on, reason } => State::KeyRevoked {
            key: key.clone(),
            on: Date(*on),
            reason: (*reason).to_owned(),
        },
        Expect::NotForSigning { key, why } => {
            match verdict {
                Err(Error::Refused {
                    signer,
                    state: State::NotForSigning { key: k, why: w },
                }) => {
                    assert_eq!(signer, &case.signer, "{name}");
                    assert_eq!(k, key, "{name}");
                    assert!(w.contains(why), "{name}: {w:?} does not say {why:?}");
                }
                other => panic!("{name}: not refused as not allowed to sign: {other:?}"),
            }
            return;
        }
        Expect::SignatureExpired { on } => State::SignatureExpired { on: Date(*on) },
        Expect::OlderThanKey { signed, created } => State::OlderThanKey {
            signed: Date(*signed),
            created: Date(*created),
        },
    };
    assert_eq!(
        verdict,
        &Err(Error::Refused {
            signer: case.signer.clone(),
            state: expected,
        }),
        "{name}"
    );
}

/// Builds the case `build` makes and checks the verdict on it.
fn check_case(build: fn(&Gpg, &Path, &Path) -> Case) {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let case = build(&gpg, &dir.path().join("data"), dir.path());
    let verdict = verify(DATA, &case.signature, &keyring_of(&[&case.keyring]));
    assert_verdict(&case, &verdict);
    if let Err(e) = &verdict {
        let text = e.to_string();
        assert!(
            text.contains(&case.signer)
                && text.contains(": get a ")
                && !text.contains("--no-sig-verify"),
            "{}: the message names the key and what to get, and no option of a program \
             (the command line adds those): {text}",
            case.name
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

// ---------------------------------------------------------------------------------
// Each kind of item 6, and good ones beside them

#[test]
fn signature_by_a_valid_key_is_good() {
    check_case(gpg::good_key);
}

#[test]
fn signature_by_a_bound_signing_subkey_is_good() {
    check_case(gpg::good_subkey);
}

#[test]
fn key_that_expires_after_the_check_is_good() {
    check_case(gpg::key_expiring_later);
}

#[test]
fn signature_by_an_expired_key_is_refused_naming_the_expiry() {
    check_case(gpg::expired_key);
}

#[test]
fn signature_by_a_subkey_whose_primary_key_expired_is_refused() {
    check_case(gpg::expired_primary_of_a_signing_subkey);
}

#[test]
fn signature_by_a_key_revoked_as_compromised_is_refused() {
    check_case(gpg::hard_revoked_key);
}

#[test]
fn signature_made_before_a_superseded_revocation_is_refused_as_gpgv_does() {
    check_case(gpg::soft_revoked_key);
}

#[test]
fn signature_by_a_revoked_subkey_is_refused() {
    check_case(gpg::revoked_subkey);
}

#[test]
fn signature_by_an_expired_subkey_is_refused() {
    check_case(gpg::expired_subkey);
}

#[test]
fn expired_signature_is_refused() {
    check_case(gpg::expired_signature);
}

#[test]
fn signature_dated_before_its_key_was_created_is_refused() {
    check_case(gpg::signature_older_than_its_key);
}

#[test]
fn signature_by_a_primary_key_without_the_sign_flag_is_refused() {
    check_case(gpg::primary_without_the_sign_flag);
}

#[test]
fn signature_by_an_encryption_only_subkey_is_refused() {
    check_case(gpg::encryption_only_subkey);
}

#[test]
fn signing_subkey_with_a_broken_back_signature_is_refused() {
    check_case(gpg::subkey_with_a_broken_back_signature);
}

#[test]
fn verdicts_agree_with_gpgv_on_every_case() {
    // gpgv is the oracle: the reference accepts a signature only when gpgv says
    // GOODSIG (EXPKEYSIG, REVKEYSIG, EXPSIG and ERRSIG are refusals).
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let mut disagree = Vec::new();
    for case in gpg::cases(&gpg, &data, dir.path()) {
        let Some(gpgv) = Gpgv::check(&case.keyring, &case.signature, &data) else {
            return;
        };
        let ours = verify(DATA, &case.signature, &keyring_of(&[&case.keyring]));
        assert_verdict(&case, &ours);
        if gpgv.accepts() != ours.is_ok() {
            disagree.push(format!(
                "{}: gpgv {} ({}), we say {ours:?}",
                case.name,
                if gpgv.accepts() { "accepts" } else { "refuses" },
                gpgv.status.replace('\n', " | ")
            ));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

#[test]
fn expiry_is_judged_at_the_time_of_the_check() {
    // The same signature by a key that expired: good when checked before the expiry,
    // refused after it; a key created after the check time is refused (gpg: "created
    // in the future").
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let case = gpg::expired_key(&gpg, &dir.path().join("data"), dir.path());
    let Expect::KeyExpired { on, .. } = case.expect else {
        unreachable!("the expired-key case")
    };
    let keyring = keyring_of(&[&case.keyring]);
    let at = |secs: u64| Options {
        now: UNIX_EPOCH + Duration::from_secs(secs),
        fingerprint: None,
    };
    let sig = read(&case.signature);
    let verified = signature::verify_detached(DATA, &sig, &keyring, &at(on - 1))
        .expect("good the second before the expiry");
    assert_eq!(verified.signer, case.signer);
    let err = signature::verify_detached(DATA, &sig, &keyring, &at(on)).expect_err("expired");
    assert!(
        matches!(
            err,
            Error::Refused {
                state: State::KeyExpired { .. },
                ..
            }
        ),
        "{err}"
    );
    let err = signature::verify_detached(DATA, &sig, &keyring, &at(on - 86_400 - 1))
        .expect_err("a key from the future");
    assert!(
        matches!(
            err,
            Error::Refused {
                state: State::KeyInTheFuture { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("clock"), "{err}");
}

#[test]
fn expired_key_message_names_the_key_the_state_the_date_and_what_to_do() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let case = gpg::expired_key(&gpg, &dir.path().join("data"), dir.path());
    let Expect::KeyExpired { on, .. } = case.expect else {
        unreachable!("the expired-key case")
    };
    let err = verify(DATA, &case.signature, &keyring_of(&[&case.keyring])).expect_err("expired");
    let text = err.to_string();
    for needle in [
        case.signer.as_str(),
        "expired on",
        &gpg::utc(on),
        "get a bmap signed with a valid key",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(!text.contains("--"), "the library names no option: {text}");
}

#[test]
fn stale_copy_of_a_key_hides_neither_its_revocation_nor_its_new_expiry() {
    // GnuPG homes hold a key twice (pubring.kbx and trustedkeys.gpg), and users keep
    // old exports: the copies are one key with the signatures of both, in any order.
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let t0 = gpg::past();
    let export = |key: &str, name: &str| {
        let path = dir.path().join(name);
        fs::write(&path, gpg.export(&[key], false)).expect("write");
        path
    };

    // Revoked after the stale export was made.
    let revoked = gpg.gen_key_at(
        "Revoked <revoked@example.org>",
        "ed25519",
        "sign",
        "never",
        t0,
    );
    let sig = dir.path().join("revoked.sig");
    gpg.detach_sign_at(&revoked, &data, &sig, t0 + 100);
    let stale = export(&revoked, "revoked-stale.gpg");
    gpg.revoke_at(&revoked, None, gpg::Reason::Compromised, t0 + 200);
    let fresh = export(&revoked, "revoked-fresh.gpg");
    assert!(
        verify(DATA, &sig, &keyring_of(&[&stale])).is_ok(),
        "stale alone"
    );
    for order in [[stale.as_path(), &fresh], [&fresh, &stale]] {
        let keyring = keyring_of(&order);
        assert_eq!(keyring.len(), 1, "one key");
        let err = verify(DATA, &sig, &keyring).expect_err("revoked");
        assert!(
            matches!(
                err,
                Error::Refused {
                    state: State::KeyRevoked { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    // Expired, then given a new expiry a year away.
    let renewed = gpg.gen_key_at(
        "Renewed <renewed@example.org>",
        "ed25519",
        "sign",
        "seconds=86400",
        t0,
    );
    let sig = dir.path().join("renewed.sig");
    gpg.detach_sign_at(&renewed, &data, &sig, t0 + 100);
    let stale = export(&renewed, "renewed-stale.gpg");
    gpg.run_at(t0 + 200, ["--quick-set-expire", &renewed, "1y"]);
    let fresh = export(&renewed, "renewed-fresh.gpg");
    assert!(
        verify(DATA, &sig, &keyring_of(&[&stale])).is_err(),
        "stale alone"
    );
    for order in [[stale.as_path(), &fresh], [&fresh, &stale]] {
        let verified = verify(DATA, &sig, &keyring_of(&order)).expect("renewed");
        assert_eq!(verified.signer, renewed);
    }
    if let Some(gpgv) = Gpgv::check(&fresh, &sig, &data) {
        assert!(gpgv.accepts(), "gpgv: {}", gpgv.status);
    }
}

// ---------------------------------------------------------------------------------
// Several signatures in one file

#[test]
fn unknown_signer_before_a_good_signature_does_not_hide_it() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let stranger = gpg.gen_key("Stranger <stranger@example.org>", "ed25519", "sign");
    let good = gpg.gen_key("Good <good@example.org>", "ed25519", "sign");
    let both = dir.path().join("both.sig");
    // One file, two signatures: the stranger's first.
    gpg.sign_at(&[&stranger, &good], &data, &both, gpg::now(), &[]);
    let keyring = dir.path().join("good.gpg");
    fs::write(&keyring, gpg.export(&[&good], false)).expect("write");
    let verified = verify(DATA, &both, &keyring_of(&[&keyring])).expect("the good one counts");
    assert_eq!(
        (verified.signer.as_str(), verified.number, verified.count),
        (good.as_str(), 2, 2)
    );
    assert!(
        matches!(verified.passed_over.as_slice(), [(1, Error::UnknownKey { issuer })] if issuer == &stranger),
        "{:?}",
        verified.passed_over
    );
    if let Some(gpgv) = Gpgv::check(&keyring, &both, &data) {
        assert!(
            gpgv.accepts(),
            "gpgv says GOODSIG for the second: {}",
            gpgv.status
        );
    }

    // The same in a clearsigned message, and armored.
    let clear = dir.path().join("both.asc");
    gpg.clearsign(&[&stranger, &good], &data, &clear);
    let (verified, text) =
        signature::verify_clearsigned(&read(&clear), &keyring_of(&[&keyring]), &Options::default())
            .expect("the good one counts");
    assert_eq!((verified.number, verified.count), (2, 2));
    assert_eq!(text, DATA);
}

#[test]
fn signature_by_an_expired_key_beside_a_good_one_is_passed_over() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let expired = gpg::expired_key(&gpg, &data, dir.path());
    let good = gpg::good_key(&gpg, &data, dir.path());
    let both = dir.path().join("both.sig");
    let mut bytes = read(&expired.signature);
    bytes.extend(read(&good.signature));
    fs::write(&both, bytes).expect("write");
    let keyring = keyring_of(&[&expired.keyring, &good.keyring]);
    let verified = verify(DATA, &both, &keyring).expect("the good one counts");
    assert_eq!(
        (verified.signer.as_str(), verified.number),
        (good.signer.as_str(), 2)
    );
    assert!(
        matches!(
            verified.passed_over.as_slice(),
            [(
                1,
                Error::Refused {
                    state: State::KeyExpired { .. },
                    ..
                }
            )]
        ),
        "{:?}",
        verified.passed_over
    );
}

#[test]
fn bad_signature_among_several_refuses_the_file() {
    // gpgv fails on a BAD signature whatever the others say.
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let good = gpg::good_key(&gpg, &data, dir.path());
    let other = dir.path().join("other");
    fs::write(&other, b"other bytes").expect("write");
    let bad = dir.path().join("bad.sig");
    gpg.detach_sign(&good.signer, &other, &bad, false);
    let both = dir.path().join("both.sig");
    let mut bytes = read(&good.signature);
    bytes.extend(read(&bad));
    fs::write(&both, bytes).expect("write");
    let err = verify(DATA, &both, &keyring_of(&[&good.keyring])).expect_err("a BAD one");
    assert!(
        matches!(&err, Error::OneOfSeveral { number: 2, count: 2, error } if matches!(**error, Error::Bad { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("BAD"), "{err}");
}

#[test]
fn several_signatures_none_good_report_the_most_telling_refusal() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let stranger = gpg.gen_key("Stranger <stranger@example.org>", "ed25519", "sign");
    let unknown = dir.path().join("unknown.sig");
    gpg.detach_sign(&stranger, &data, &unknown, false);
    let revoked = gpg::hard_revoked_key(&gpg, &data, dir.path());
    let both = dir.path().join("both.sig");
    let mut bytes = read(&unknown);
    bytes.extend(read(&revoked.signature));
    fs::write(&both, bytes).expect("write");
    let err = verify(DATA, &both, &keyring_of(&[&revoked.keyring])).expect_err("none good");
    assert!(
        matches!(&err, Error::NoneOfSeveral { number: 2, count: 2, error }
            if matches!(**error, Error::Refused { state: State::KeyRevoked { .. }, .. })),
        "{err:?}"
    );
}

#[test]
fn fingerprint_option_chooses_among_several_good_signatures() {
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let alice = gpg.gen_key("Alice <alice@example.org>", "ed25519", "sign");
    let bob = gpg.gen_key("Bob <bob@example.org>", "ed25519", "sign");
    let carol = gpg.gen_key("Carol <carol@example.org>", "ed25519", "sign");
    let both = dir.path().join("both.sig");
    gpg.sign_at(&[&alice, &bob], &data, &both, gpg::now(), &[]);
    let keyring = dir.path().join("keys.gpg");
    fs::write(&keyring, gpg.export(&[&alice, &bob, &carol], false)).expect("write");
    let keyring = keyring_of(&[&keyring]);
    let sig = read(&both);
    let with = |wanted: &str| Options {
        fingerprint: Some(wanted.to_owned()),
        ..Options::default()
    };
    let verified = signature::verify_detached(DATA, &sig, &keyring, &with(&bob.to_lowercase()))
        .expect("Bob signed");
    assert_eq!(
        (verified.signer.as_str(), verified.number),
        (bob.as_str(), 2)
    );
    let err =
        signature::verify_detached(DATA, &sig, &keyring, &with(&carol)).expect_err("not Carol");
    assert!(
        matches!(&err, Error::WrongSigner { signers, .. } if signers.len() == 2),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&alice) && text.contains(&bob) && text.contains(&carol),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------
// secp256k1

#[test]
fn secp256k1_signatures_verify_whatever_half_of_the_curve_order_s_falls_in() {
    // libgcrypt does not normalise ECDSA signatures to "low S": about half of gpg's
    // secp256k1 signatures have S > n/2, and gpgv says "Good signature" for all.
    let Some(gpg) = Gpg::new() else {
        return;
    };
    let dir = workdir();
    let data = dir.path().join("data");
    let (key, high, low, tries) = gpg::secp256k1_high_and_low_s(&gpg, &data, dir.path());
    assert_eq!(
        gpg::last_mpi_bits(&read(&high)),
        256,
        "a high-S signature occurred"
    );
    eprintln!("a high-S and a low-S signature after {tries} signatures");
    let keyring = dir.path().join("k1.gpg");
    fs::write(&keyring, gpg.export(&[&key], false)).expect("write");
    for sig in [&low, &high] {
        let verified = verify(DATA, sig, &keyring_of(&[&keyring]))
            .unwrap_or_else(|e| panic!("{}: {e}", sig.display()));
        assert_eq!(verified.signer, key);
        if let Some(gpgv) = Gpgv::check(&keyring, sig, &data) {
            assert!(gpgv.accepts(), "gpgv: {}", gpgv.status);
        }
        // And the normalised signature still covers only these bytes.
        let err = verify(b"other bytes", sig, &keyring_of(&[&keyring])).expect_err("other data");
        assert!(matches!(err, Error::Bad { .. }), "{err}");
    }
}

// ---------------------------------------------------------------------------------
// The reference's own signed test data (`../shared/conformance`), when it is there

/// The reference's test data directory; `None` (skipped, or failing when strict) when
/// `../shared/conformance` is not beside the repository.
#[track_caller]
fn conformance() -> Option<PathBuf> {
    test_support::reference_test_data()
}

/// The key of the reference's keybox; it expired on 2024-06-12 20:04:40 UTC.
const REF_KEY: &str = "927FF9746434704C5774BE648D49DFB1163BDFB4";
/// When it expired.
const REF_KEY_EXPIRED: u64 = 1_718_222_680;

fn reference_keyring(dir: &Path) -> Keyring {
    let keyring = keyring_of(&[&dir.join("gnupg/pubring.kbx")]);
    assert_eq!(keyring.len(), 1, "the test keybox holds one key");
    keyring
}

/// While the reference key was valid (2023).
fn in_2023() -> Options {
    Options {
        now: UNIX_EPOCH + Duration::from_secs(1_672_531_200),
        fingerprint: None,
    }
}

#[test]
fn valid_detached_signature_from_an_expired_key_made_while_it_was_valid() {
    // gpgv says EXPKEYSIG, the reference refuses it: so do we, naming the expiry.
    let Some(dir) = conformance() else {
        return;
    };
    let err = verify(
        &read(&dir.join("test.image.bmap.v2.0")),
        &dir.join("signatures/test.image.bmap.v2.0.valid-sig"),
        &reference_keyring(&dir),
    )
    .expect_err("the key has expired");
    assert_eq!(
        err,
        Error::Refused {
            signer: REF_KEY.into(),
            state: State::KeyExpired {
                key: REF_KEY.into(),
                on: Date(REF_KEY_EXPIRED),
            },
        }
    );
    assert!(
        err.to_string()
            .contains("expired on 2024-06-12 20:04:40 UTC"),
        "{err}"
    );
    // Checked as of 2023, it was good.
    let verified = signature::verify_detached(
        &read(&dir.join("test.image.bmap.v2.0")),
        &read(&dir.join("signatures/test.image.bmap.v2.0.valid-sig")),
        &reference_keyring(&dir),
        &in_2023(),
    )
    .expect("good in 2023");
    assert!(verified.matches(REF_KEY), "{verified:?}");
    assert!(!verified.user_id.is_empty());
    assert!(SystemTime::now() > UNIX_EPOCH + Duration::from_secs(REF_KEY_EXPIRED));
}

#[test]
fn reference_signature_by_a_key_not_in_the_keyring_is_refused() {
    let Some(dir) = conformance() else {
        return;
    };
    let err = verify(
        &read(&dir.join("test.image.bmap.v2.0")),
        &dir.join("signatures/test.image.bmap.v2.0.sig-by-wrong-key"),
        &reference_keyring(&dir),
    )
    .expect_err("unknown key");
    assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
}

#[test]
fn reference_valid_signature_over_another_bmap_is_bad() {
    let Some(dir) = conformance() else {
        return;
    };
    let err = signature::verify_detached(
        &read(&dir.join("test.image.bmap.v1.4")),
        &read(&dir.join("signatures/test.image.bmap.v2.0.valid-sig")),
        &reference_keyring(&dir),
        &in_2023(),
    )
    .expect_err("wrong data");
    assert!(matches!(err, Error::Bad { .. }), "{err}");
}

#[test]
fn reference_clearsigned_bmap_yields_the_exact_bmap_and_its_expired_key_is_refused() {
    let Some(dir) = conformance() else {
        return;
    };
    let asc = read(&dir.join("signatures/test.image.bmap.v2.0.asc"));
    assert!(signature::is_clearsigned(&asc));
    let err = signature::verify_clearsigned(&asc, &reference_keyring(&dir), &Options::default())
        .expect_err("the key has expired");
    assert!(
        matches!(
            err,
            Error::Refused {
                state: State::KeyExpired { .. },
                ..
            }
        ),
        "{err}"
    );
    let (verified, text) =
        signature::verify_clearsigned(&asc, &reference_keyring(&dir), &in_2023())
            .expect("good clearsigned bmap in 2023");
    assert!(verified.matches(REF_KEY));
    assert_eq!(
        text,
        read(&dir.join("test.image.bmap.v2.0")),
        "the signed text is the bmap, byte for byte"
    );
    let parsed = bmap::format::parse(&text).expect("and it parses, self-checksum included");
    assert_eq!(parsed.bmap.ranges().len(), 48);
    assert_eq!(signature::clearsigned_text(&asc).expect("text"), text);
}

#[test]
fn reference_clearsigned_bmap_edited_inside_the_signed_text_is_bad() {
    let Some(dir) = conformance() else {
        return;
    };
    let asc =
        String::from_utf8(read(&dir.join("signatures/test.image.bmap.v2.0.asc"))).expect("text");
    let edited = asc.replacen("198-199", "198-200", 1);
    assert_ne!(edited, asc);
    let err =
        signature::verify_clearsigned(edited.as_bytes(), &reference_keyring(&dir), &in_2023())
            .expect_err("edited");
    assert!(matches!(err, Error::Bad { .. }), "{err}");
}
