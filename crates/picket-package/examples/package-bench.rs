//! Benchmark: time to verify and extract a package of about 50 MB (the figure in
//! BENCHMARKS.md). Builds an input directory of `--size-mb` MB (60% incompressible bytes in
//! one large file, 40% text in 100 KB files), signs it once, then runs `--runs` times:
//! `verify_file` (signature, manifest, payload digest, whole-file digest) and `extract` (zstd
//! decompression, per-file SHA-256, writes and fsyncs into a fresh directory, rename), and
//! prints the median of each and of both together.
//!
//! `cargo run --release -p picket-package --example package-bench -- [--size-mb 50] [--runs 7]`

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use picket_domain::Timestamp;
use picket_package::{BuildOptions, Limits, SecretKey, Trust};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn input(dir: &Path, total: usize) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("share/rules")).unwrap();
    std::fs::write(dir.join("bin/picket-sensor"), noise(total * 6 / 10, 7)).unwrap();
    let line = b"rule: match any event where field contains value\n";
    let text: Vec<u8> = (0..100_000).map(|i| line[i % line.len()]).collect();
    for i in 0..(total * 4 / 10 / text.len()) {
        std::fs::write(dir.join(format!("share/rules/{i:04}.rules")), &text).unwrap();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let size_mb = arg("--size-mb", 50) as usize;
    let runs = arg("--runs", 7).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("input");
    input(&src, size_mb << 20);
    let key = SecretKey::from_seed([1; 32]);
    let now = Timestamp(1_800_000_000_000);
    let opts = BuildOptions {
        version: "1.0.0".parse().unwrap(),
        entrypoint: "bin/picket-sensor".into(),
        created_at: now,
        expires_at: Timestamp(now.0 + 86_400_000),
        min_updater_version: "0.1.0".parse().unwrap(),
        compression_level: 3,
    };
    let pkg = tmp.path().join("picket.pkg");
    let t = Instant::now();
    let manifest = picket_package::build(&src, &opts, &key, &pkg).unwrap();
    let build = t.elapsed();
    let unpacked: u64 = manifest.files.iter().map(|f| f.size).sum();
    let packed = std::fs::metadata(&pkg).unwrap().len();
    let trust = Trust { keys: vec![key.public()], now, limits: Limits::default() };
    let (mut verify, mut extract, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t = Instant::now();
        let verified = picket_package::verify_file(&pkg, &trust).unwrap();
        let v = t.elapsed();
        let dest = tmp.path().join(format!("install/{i}"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let t = Instant::now();
        let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&pkg).unwrap());
        picket_package::extract(f, &verified, &dest, &trust.limits).unwrap();
        let e = t.elapsed();
        std::fs::remove_dir_all(&dest).unwrap();
        verify.push(v);
        extract.push(e);
        both.push(v + e);
    }
    println!(
        "package: {} files, {:.1} MB unpacked, {:.1} MB packed; built and signed in {}",
        manifest.files.len(),
        unpacked as f64 / 1e6,
        packed as f64 / 1e6,
        ms(build)
    );
    println!(
        "median of {runs} runs: verify {}, extract {}, verify + extract {}",
        ms(median(verify)),
        ms(median(extract)),
        ms(median(both))
    );
}
