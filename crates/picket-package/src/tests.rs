//! Tests of the package format: a round trip, and every refusal (tampering, keys, paths, link
//! and device entries, caps, manifest mismatches), each leaving no directory behind.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use picket_domain::{Timestamp, Version};

use crate::build::assemble;
use crate::*;

const NOW: Timestamp = Timestamp(1_800_000_000_000);
const DAY: i64 = 86_400_000;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn trust(keys: &[&SecretKey]) -> Trust {
    Trust { keys: keys.iter().map(|k| k.public()).collect(), now: NOW, limits: Limits::default() }
}

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn opts(version: &str) -> BuildOptions {
    BuildOptions {
        version: v(version),
        entrypoint: "bin/sensor".into(),
        created_at: NOW,
        expires_at: Timestamp(NOW.0 + 30 * DAY),
        min_updater_version: v("0.1.0"),
        compression_level: 3,
    }
}

/// An input directory: an executable entry point, a config file, a nested file, an empty dir.
fn input(root: &Path) -> PathBuf {
    let dir = root.join("input");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("share/doc")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("bin/sensor"), b"#!/bin/sh\necho sensor\n").unwrap();
    std::fs::set_permissions(dir.join("bin/sensor"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("config.toml"), b"a = 1\n").unwrap();
    std::fs::set_permissions(dir.join("config.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.join("share/doc/README"), vec![b'x'; 100_000]).unwrap();
    dir
}

fn built(root: &Path, k: &SecretKey) -> PathBuf {
    let out = root.join("pkg.tar");
    build(&input(root), &opts("1.2.3"), k, &out).unwrap();
    out
}

/// The directory extraction targets, alone in its parent so leftovers show.
fn target(root: &Path) -> PathBuf {
    let parent = root.join("install");
    std::fs::create_dir_all(&parent).unwrap();
    parent.join("1.2.3")
}

fn assert_nothing_left(dest: &Path) {
    let parent = dest.parent().unwrap();
    let left: Vec<_> = std::fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind in {}: {left:?}", parent.display());
}

#[test]
fn a_built_package_verifies_and_extracts_with_masked_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let pkg = built(tmp.path(), &k);
    let ver = verify_file(&pkg, &trust(&[&key(2), &k])).unwrap();
    let m = &ver.manifest;
    assert_eq!((m.version, m.entrypoint.as_str(), m.format), (v("1.2.3"), "bin/sensor", MANIFEST_FORMAT));
    let paths: Vec<(&str, u32, u64)> = m.files.iter().map(|f| (f.path.as_str(), f.mode, f.size)).collect();
    assert_eq!(paths, [("bin/sensor", 0o755, 22), ("config.toml", 0o644, 6), ("share/doc/README", 0o644, 100_000)]);
    assert_eq!(ver.key_id, k.public().key_id());
    let bytes = std::fs::read(&pkg).unwrap();
    assert_eq!((ver.package_sha256.clone(), ver.package_size), (sha256_hex(&bytes), bytes.len() as u64));
    assert_eq!(verify(&bytes[..], &trust(&[&k])).unwrap(), ver, "verifying bytes and the file agree");
    check_payload(&bytes[..], &ver, &Limits::default()).unwrap();

    let dest = target(tmp.path());
    extract_file(&pkg, &ver, &dest, &Limits::default()).unwrap();
    assert_eq!(std::fs::read(dest.join("bin/sensor")).unwrap(), b"#!/bin/sh\necho sensor\n");
    assert_eq!(std::fs::read(dest.join("share/doc/README")).unwrap().len(), 100_000);
    assert!(dest.join("empty").is_dir());
    let mode = |p: &str| std::fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode("bin/sensor"), mode("config.toml"), mode("share"), mode("")), (0o755, 0o644, 0o755, 0o755));
    let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["1.2.3"], "no temp dir remains");
    // Never over an existing directory.
    let e = extract_file(&pkg, &ver, &dest, &Limits::default()).unwrap_err();
    assert!(matches!(e, PackageError::DestinationExists(_)), "{e}");
}

#[test]
fn building_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = input(tmp.path());
    let k = key(1);
    let mut o = opts("1.0.0");
    o.entrypoint = "bin/missing".into();
    let e = build(&dir, &o, &k, &tmp.path().join("a.pkg")).unwrap_err().to_string();
    assert!(e.contains("entry point \"bin/missing\""), "{e}");
    o.entrypoint = "../escape".into();
    assert!(build(&dir, &o, &k, &tmp.path().join("a.pkg")).is_err());
    std::fs::write(tmp.path().join("exists.pkg"), b"").unwrap();
    let e = build(&dir, &opts("1.0.0"), &k, &tmp.path().join("exists.pkg")).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
    let e = build(&dir, &opts("1.0.0"), &k, &tmp.path().join("b.pkg")).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    assert!(!tmp.path().join("a.pkg").exists() && !tmp.path().join("b.pkg").exists());
    // An entry point given as ./path is the same file, and is made executable.
    std::fs::remove_file(dir.join("link")).unwrap();
    std::fs::set_permissions(dir.join("config.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    o.entrypoint = "./config.toml".into();
    let m = build(&dir, &o, &k, &tmp.path().join("c.pkg")).unwrap();
    assert_eq!((m.entrypoint.as_str(), m.files[1].mode), ("config.toml", 0o755));
}

#[test]
fn a_tampered_payload_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let pkg = built(tmp.path(), &k);
    let good = verify_file(&pkg, &trust(&[&k])).unwrap();
    let mut bytes = std::fs::read(&pkg).unwrap();
    let n = bytes.len();
    bytes[n - 1536 + 100] ^= 0x01; // inside the payload (233 bytes before padding and the end blocks)
    let e = verify(&bytes[..], &trust(&[&k])).unwrap_err();
    assert!(matches!(e, PackageError::DigestMismatch(_)), "{e}");
    // Swapped after verification: extraction rehashes and leaves nothing.
    let dest = target(tmp.path());
    assert!(extract(&bytes[..], &good, &dest, &Limits::default()).is_err());
    assert!(!dest.exists());
    assert_nothing_left(&dest);
}

#[test]
fn a_tampered_manifest_is_a_bad_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let pkg = built(tmp.path(), &k);
    let mut bytes = std::fs::read(&pkg).unwrap();
    let at = bytes.windows(7).position(|w| w == b"\"1.2.3\"").unwrap();
    bytes[at + 5] = b'9'; // same length: the tar stays well-formed, the version says 1.2.9
    let e = verify(&bytes[..], &trust(&[&k])).unwrap_err();
    assert!(matches!(e, PackageError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("bad signature"), "{e}");
}

#[test]
fn an_unknown_key_is_refused_and_no_key_means_nothing_is_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = built(tmp.path(), &key(1));
    let e = verify_file(&pkg, &trust(&[&key(2)])).unwrap_err();
    assert!(matches!(&e, PackageError::UnknownKey { key_id } if *key_id == key(1).public().key_id()), "{e}");
    assert!(matches!(verify_file(&pkg, &trust(&[])).unwrap_err(), PackageError::UnknownKey { .. }));
}

#[test]
fn expiry_is_its_own_error_carrying_the_verified_package() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let pkg = built(tmp.path(), &k);
    let mut t = trust(&[&k]);
    t.now = Timestamp(NOW.0 + 30 * DAY);
    let e = verify_file(&pkg, &t).unwrap_err();
    assert!(e.is_expired(), "{e}");
    assert!(e.to_string().contains("not offered as an update"), "{e}");
    let PackageError::Expired { verified, .. } = e else { unreachable!() };
    assert_eq!(verified.manifest.version, v("1.2.3"));
    assert!(verified.check_updater(v("0.1.0")).is_ok());
    let e = verified.check_updater(v("0.0.9")).unwrap_err();
    assert!(matches!(e, PackageError::UpdaterTooOld { .. }), "{e}");
}

// ---- crafted payloads, signed with a trusted key ----

enum E<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    Hardlink(&'a [u8], &'a [u8]),
    Device(&'a [u8]),
}

/// A ustar header whose name is written raw (the tar crate refuses to write `..`).
fn raw_header(name: &[u8], size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h
}

fn payload(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(name, data) => {
                let mut h = raw_header(name, data.len() as u64, tar::EntryType::Regular);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Dir(name) => {
                let mut h = raw_header(name, 0, tar::EntryType::Directory);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Symlink(name, target) | E::Hardlink(name, target) => {
                let kind = if matches!(e, E::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                let mut h = raw_header(name, 0, kind);
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Device(name) => {
                let mut h = raw_header(name, 0, tar::EntryType::Char);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap()
}

/// A package of `entries` whose manifest lists `files` (path, contents), signed by `k`.
fn craft(dir: &Path, name: &str, entries: &[E<'_>], files: &[(&str, &[u8])], k: &SecretKey) -> PathBuf {
    let zst = payload(entries);
    let files = files
        .iter()
        .map(|(p, data)| ManifestFile {
            path: p.to_string(),
            size: data.len() as u64,
            sha256: sha256_hex(data),
            mode: 0o755,
        })
        .collect::<Vec<_>>();
    let m = Manifest {
        format: MANIFEST_FORMAT,
        version: v("2.0.0"),
        entrypoint: files.first().map(|f| f.path.clone()).unwrap_or_default(),
        files,
        payload_sha256: sha256_hex(&zst),
        payload_size: zst.len() as u64,
        min_updater_version: v("0.1.0"),
        created_at: NOW,
        expires_at: Timestamp(NOW.0 + DAY),
    };
    let out = dir.join(name);
    assemble(&serde_json::to_vec(&m).unwrap(), k, &zst[..], zst.len() as u64, dir, &out).unwrap();
    out
}

/// Verifies `pkg` (which must pass) and extracts it (which must fail); nothing may remain.
#[track_caller]
fn refused_at_extraction(tmp: &Path, pkg: &Path, limits: &Limits) -> PackageError {
    let k = key(1);
    let ver = verify_file(pkg, &trust(&[&k])).unwrap();
    assert!(check_payload(std::fs::File::open(pkg).unwrap(), &ver, limits).is_err(), "check_payload agrees");
    let dest = target(tmp);
    let e = extract_file(pkg, &ver, &dest, limits).unwrap_err();
    assert!(!dest.exists(), "{e}");
    assert_nothing_left(&dest);
    std::fs::remove_dir(dest.parent().unwrap()).unwrap();
    e
}

#[test]
fn crafted_payload_is_extracted_when_it_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg =
        craft(tmp.path(), "ok.pkg", &[E::Dir(b"bin/"), E::File(b"bin/run", b"hi")], &[("bin/run", b"hi")], &key(1));
    let ver = verify_file(&pkg, &trust(&[&key(1)])).unwrap();
    let dest = target(tmp.path());
    extract_file(&pkg, &ver, &dest, &Limits::default()).unwrap();
    assert_eq!(std::fs::read(dest.join("bin/run")).unwrap(), b"hi");
    // The setuid bit of the tar header is not kept: the manifest's 755 is.
    assert_eq!(std::fs::metadata(dest.join("bin/run")).unwrap().permissions().mode() & 0o7777, 0o755);
}

#[test]
fn path_traversal_links_and_devices_are_refused() {
    let k = key(1);
    let ok: (&str, &[u8]) = ("run", b"hi");
    let cases: Vec<(&str, Vec<E<'_>>, &str)> = vec![
        ("dotdot", vec![E::File(b"run", b"hi"), E::File(b"../x", b"evil")], "'..'"),
        ("nested-dotdot", vec![E::File(b"run", b"hi"), E::File(b"a/../../x", b"evil")], "'..'"),
        ("absolute", vec![E::File(b"run", b"hi"), E::File(b"/tmp/picket-evil", b"evil")], "absolute"),
        ("dot", vec![E::File(b"./run", b"hi")], "'.'"),
        ("symlink", vec![E::Symlink(b"lib", b"/etc"), E::File(b"run", b"hi")], "symbolic link"),
        ("hardlink", vec![E::File(b"run", b"hi"), E::Hardlink(b"shadow", b"/etc/shadow")], "hard link"),
        ("device", vec![E::File(b"run", b"hi"), E::Device(b"null")], "character device"),
        ("dir-dotdot", vec![E::Dir(b"../up/"), E::File(b"run", b"hi")], "'..'"),
    ];
    for (name, entries, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = craft(tmp.path(), "evil.pkg", &entries, &[ok], &k);
        let e = refused_at_extraction(tmp.path(), &pkg, &Limits::default());
        assert!(matches!(e, PackageError::UnsafePath { .. } | PackageError::ForbiddenEntry { .. }), "{name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
        assert!(!tmp.path().join("x").exists() && !Path::new("/tmp/picket-evil").exists(), "{name}");
    }
}

#[test]
fn manifests_with_unsafe_paths_are_refused_at_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    for (i, p) in ["../x", "/abs", "a//b", "a/./b", ""].iter().enumerate() {
        let pkg = craft(tmp.path(), &format!("m{i}.pkg"), &[E::File(b"run", b"hi")], &[(p, b"hi")], &k);
        let e = verify_file(&pkg, &trust(&[&k])).unwrap_err();
        assert!(matches!(e, PackageError::UnsafePath { .. }), "{p:?}: {e}");
    }
}

#[test]
fn files_not_matching_the_manifest_are_refused() {
    let k = key(1);
    type Case<'a> = (&'a str, Vec<E<'a>>, Vec<(&'a str, &'a [u8])>);
    let cases: Vec<Case<'_>> = vec![
        ("not in manifest", vec![E::File(b"run", b"hi"), E::File(b"extra", b"x")], vec![("run", b"hi")]),
        ("missing", vec![E::File(b"run", b"hi")], vec![("run", b"hi"), ("lib.so", b"x")]),
        ("digest", vec![E::File(b"run", b"hI")], vec![("run", b"hi")]),
        ("size", vec![E::File(b"run", b"hi!")], vec![("run", b"hi")]),
        ("duplicate", vec![E::File(b"run", b"hi"), E::File(b"run", b"hi")], vec![("run", b"hi")]),
        (
            "file under a file",
            vec![E::File(b"run", b"hi"), E::File(b"run/x", b"y")],
            vec![("run", b"hi"), ("run/x", b"y")],
        ),
    ];
    for (name, entries, files) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = craft(tmp.path(), "p.pkg", &entries, &files, &k);
        let e = refused_at_extraction(tmp.path(), &pkg, &Limits::default());
        let expected = match name {
            "not in manifest" => matches!(e, PackageError::UnexpectedFile(_)),
            "missing" => matches!(e, PackageError::MissingFile(_)),
            "digest" | "size" => matches!(e, PackageError::DigestMismatch(_)),
            "duplicate" => matches!(e, PackageError::DuplicateEntry(_)),
            _ => matches!(e, PackageError::Malformed(_)),
        };
        assert!(expected, "{name}: {e}");
    }
}

#[test]
fn entry_and_byte_caps_hold_at_verification_and_extraction() {
    let k = key(1);
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..20).map(|i| (format!("f{i:02}"), vec![b'a'; 1000])).collect();
    let entries: Vec<E<'_>> = files.iter().map(|(p, d)| E::File(p.as_bytes(), d)).collect();
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
    let pkg = craft(tmp.path(), "many.pkg", &entries, &listed, &k);
    // At verification, from the manifest.
    let mut t = trust(&[&k]);
    t.limits.max_entries = 10;
    assert!(matches!(verify_file(&pkg, &t).unwrap_err(), PackageError::TooManyEntries { limit: 10 }));
    t.limits = Limits { max_unpacked_bytes: 5000, ..Limits::default() };
    assert!(matches!(verify_file(&pkg, &t).unwrap_err(), PackageError::TooLarge { .. }));
    t.limits = Limits { max_package_bytes: 1000, ..Limits::default() };
    assert!(matches!(verify_file(&pkg, &t).unwrap_err(), PackageError::TooLarge { .. }));
    // At extraction, counting what the payload really holds (directories count too).
    let e = refused_at_extraction(tmp.path(), &pkg, &Limits { max_entries: 10, ..Limits::default() });
    assert!(matches!(e, PackageError::TooManyEntries { limit: 10 }), "{e}");
    let e = refused_at_extraction(tmp.path(), &pkg, &Limits { max_unpacked_bytes: 5000, ..Limits::default() });
    assert!(matches!(e, PackageError::TooLarge { .. }), "{e}");
    let dirs: Vec<String> = (0..20).map(|i| format!("d{i}/")).collect();
    let mut with_dirs: Vec<E<'_>> = dirs.iter().map(|d| E::Dir(d.as_bytes())).collect();
    with_dirs.push(E::File(b"run", b"hi"));
    let pkg = craft(tmp.path(), "dirs.pkg", &with_dirs, &[("run", b"hi")], &k);
    let e = refused_at_extraction(tmp.path(), &pkg, &Limits { max_entries: 10, ..Limits::default() });
    assert!(matches!(e, PackageError::TooManyEntries { .. }), "{e}");
}

#[test]
fn the_container_must_be_exactly_manifest_signature_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let k = key(1);
    let pkg = built(tmp.path(), &k);
    let bytes = std::fs::read(&pkg).unwrap();
    // Re-pack the same three entries in another order, and with an extra entry.
    let mut ar = tar::Archive::new(&bytes[..]);
    let parts: Vec<(String, Vec<u8>)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut d = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut d).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), d)
        })
        .collect();
    let pack = |order: &[usize], extra: bool| {
        let mut b = tar::Builder::new(Vec::new());
        for &i in order {
            let mut h = tar::Header::new_ustar();
            h.set_size(parts[i].1.len() as u64);
            h.set_path(&parts[i].0).unwrap();
            h.set_cksum();
            b.append(&h, &parts[i].1[..]).unwrap();
        }
        if extra {
            let mut h = tar::Header::new_ustar();
            h.set_size(1);
            h.set_path("more").unwrap();
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        }
        b.into_inner().unwrap()
    };
    assert!(verify(&pack(&[0, 1, 2], false)[..], &trust(&[&k])).is_ok(), "the same entries re-packed");
    for (order, extra) in [(&[1usize, 0, 2][..], false), (&[0, 2, 1], false), (&[0, 1], false), (&[0, 1, 2], true)] {
        let e = verify(&pack(order, extra)[..], &trust(&[&k])).unwrap_err();
        assert!(matches!(e, PackageError::Malformed(_)), "{order:?} {extra}: {e}");
    }
    assert!(matches!(verify(&b"not a tar at all"[..], &trust(&[&k])).unwrap_err(), PackageError::Malformed(_)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, .. Default::default() })]

    /// Whatever single byte of a package is changed, it is refused, or (a byte no signature
    /// covers: tar header times, padding) it installs exactly the signed files.
    #[test]
    fn a_changed_byte_never_installs_other_contents(at in 0usize..1_000_000, bit in 0u8..8) {
        let tmp = tempfile::tempdir().unwrap();
        let k = key(1);
        let pkg = built(tmp.path(), &k);
        let original = verify_file(&pkg, &trust(&[&k])).unwrap();
        let mut bytes = std::fs::read(&pkg).unwrap();
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        if let Ok(v) = verify(&bytes[..], &trust(&[&k])) {
            proptest::prop_assert_eq!(&v.manifest, &original.manifest);
            let dest = target(tmp.path());
            if extract(&bytes[..], &v, &dest, &Limits::default()).is_ok() {
                for f in &original.manifest.files {
                    let data = std::fs::read(dest.join(&f.path)).unwrap();
                    proptest::prop_assert_eq!(sha256_hex(&data), f.sha256.clone());
                }
            } else {
                assert_nothing_left(&dest);
            }
        }
    }
}
