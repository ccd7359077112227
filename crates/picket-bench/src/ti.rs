//! `picket-bench ti`: events/s of the `picket-ti` detection engine on one core against a
//! generated indicators file (IPs, CIDRs, domains, SHA-256 hashes, patterns) and a generated
//! JSON-lines corpus in memory, a small fraction of whose events match; plus the process RSS.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use picket_ti::{DEFAULT_EXCERPT_BYTES, Matcher, excerpt};

/// Options of the detection benchmark.
#[derive(clap::Args, Debug)]
pub struct TiArgs {
    /// Indicators in the generated file.
    #[arg(long, default_value_t = 100_000)]
    indicators: usize,
    /// Of which patterns (regular expressions).
    #[arg(long, default_value_t = 100)]
    patterns: usize,
    /// Events matched per run (the corpus is cycled).
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// Distinct events in the corpus.
    #[arg(long, default_value_t = 100_000)]
    corpus: usize,
    /// Fraction of events carrying an indicator.
    #[arg(long, default_value_t = 0.01)]
    match_fraction: f64,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn ipv4(&mut self) -> String {
        let a = self.next();
        format!("{}.{}.{}.{}", 1 + a % 223, (a >> 8) & 255, (a >> 16) & 255, (a >> 24) & 255)
    }
    fn hex(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes * 2);
        for _ in 0..bytes.div_ceil(8) {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(bytes * 2);
        s
    }
    fn word(&mut self) -> String {
        const SYL: [&str; 12] = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "xa", "qu", "bo"];
        (0..2 + self.below(3)).map(|_| SYL[self.below(SYL.len())]).collect()
    }
}

/// Indicator values kept to plant into matching events.
#[derive(Default)]
struct Planted {
    ips: Vec<String>,
    domains: Vec<String>,
    hashes: Vec<String>,
    cidrs: Vec<(u32, u8)>,
    pattern_words: Vec<String>,
}

fn indicators_file(rng: &mut Rng, n: usize, patterns: usize) -> (String, Planted) {
    let mut p = Planted::default();
    let mut items = Vec::with_capacity(n);
    let sev = ["low", "medium", "high"];
    for i in 0..n {
        let (kind, value) = if i < patterns {
            let w = format!("dropper{i}");
            p.pattern_words.push(w.clone());
            ("pattern", format!(r"{w}\.exe\s+-[a-z]+"))
        } else {
            match rng.below(100) {
                0..35 => {
                    let v = if rng.below(10) == 0 {
                        format!("2001:db8:{:x}::{:x}", rng.below(65536), rng.below(65536))
                    } else {
                        rng.ipv4()
                    };
                    p.ips.push(v.clone());
                    ("ip", v)
                }
                35..45 => {
                    let len = 16 + rng.below(15) as u8;
                    let net = (rng.next() as u32) & (u32::MAX << (32 - u32::from(len)));
                    p.cidrs.push((net, len));
                    ("cidr", format!("{}/{len}", std::net::Ipv4Addr::from(net)))
                }
                45..80 => {
                    let v =
                        format!("{}-{}.{}", rng.word(), rng.below(100_000), ["com", "net", "xyz", "ru"][rng.below(4)]);
                    p.domains.push(v.clone());
                    ("domain", v)
                }
                _ => {
                    let v = rng.hex(32);
                    p.hashes.push(v.clone());
                    ("sha256", v)
                }
            }
        };
        items.push(
            serde_json::json!({"type": kind, "value": value, "severity": sev[i % 3], "description": "generated"})
                .to_string(),
        );
    }
    (format!("{{\"indicators\": [\n{}\n]}}", items.join(",\n")), p)
}

fn event(rng: &mut Rng, p: &Planted, matching: bool) -> String {
    let mut src = format!("10.{}.{}.{}", rng.below(256), rng.below(256), 1 + rng.below(254));
    let mut dst = rng.ipv4();
    let mut query = format!("www.{}.{}", rng.word(), ["com", "org", "net", "io"][rng.below(4)]);
    let mut hash = rng.hex(32);
    let exe = ["svchost", "chrome", "python3", "sshd", "nginx"][rng.below(5)];
    let mut cmd = format!("/usr/bin/{exe} --config /etc/{exe}/{}.conf -v", rng.word());
    if matching {
        match rng.below(5) {
            0 if !p.ips.is_empty() => dst = p.ips[rng.below(p.ips.len())].clone(),
            1 if !p.cidrs.is_empty() => {
                let (net, len) = p.cidrs[rng.below(p.cidrs.len())];
                let host = (rng.next() as u32) & !(u32::MAX << (32 - u32::from(len)));
                src = std::net::Ipv4Addr::from(net | host).to_string();
            }
            2 if !p.domains.is_empty() => {
                query = format!("cdn.{}", p.domains[rng.below(p.domains.len())].to_uppercase());
            }
            3 if !p.hashes.is_empty() => hash = p.hashes[rng.below(p.hashes.len())].to_uppercase(),
            _ if !p.pattern_words.is_empty() => {
                cmd = format!("C:\\\\tmp\\\\{}.exe -enc SQBFAFgA", p.pattern_words[rng.below(p.pattern_words.len())]);
            }
            _ => {}
        }
    }
    format!(
        r#"{{"time":"2026-11-22T12:{:02}:{:02}Z","host":"web-{}","event":"network","src_ip":"{src}","src_port":{},"dst_ip":"{dst}","dst_port":443,"query":"{query}","process":{{"name":"{exe}","pid":{},"sha256":"{hash}","command_line":"{cmd}"}},"user":"{}","action":"allow","tags":["prod","edge"]}}"#,
        rng.below(60),
        rng.below(60),
        rng.below(100),
        1024 + rng.below(60000),
        rng.below(65536),
        rng.word(),
    )
}

/// (VmRSS, VmHWM) of this process, in KiB.
fn rss_kib() -> Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Runs the detection benchmark.
pub fn run(a: TiArgs) -> Result<()> {
    let mut rng = Rng(0x5eed);
    let (file, planted) = indicators_file(&mut rng, a.indicators, a.patterns.min(a.indicators));
    let (rss0, _) = rss_kib()?;
    let t = Instant::now();
    let matcher = Matcher::from_json(file.as_bytes()).context("compiling the generated indicators")?;
    let build = t.elapsed();
    drop(file);
    let (rss1, _) = rss_kib()?;
    println!(
        "## ti: {} indicators ({} patterns), build {:.0} ms, matcher ~{} MiB RSS",
        a.indicators,
        a.patterns,
        build.as_secs_f64() * 1e3,
        rss1.saturating_sub(rss0) / 1024
    );

    let mut corpus = String::new();
    let mut expected = 0usize;
    for _ in 0..a.corpus {
        let m = (rng.next() as f64 / u64::MAX as f64) < a.match_fraction;
        expected += usize::from(m);
        corpus.push_str(&event(&mut rng, &planted, m));
        corpus.push('\n');
    }
    println!(
        "corpus: {} events, {:.0} bytes/event, {} planted matches",
        a.corpus,
        corpus.len() as f64 / a.corpus as f64,
        expected
    );

    let mut rates = Vec::new();
    let mut out = Vec::new();
    for run in 0..a.runs {
        let (mut events, mut matched, mut bytes, mut excerpt_bytes) = (0usize, 0usize, 0usize, 0usize);
        let t = Instant::now();
        'outer: loop {
            for line in corpus.lines() {
                if events == a.events {
                    break 'outer;
                }
                matcher.match_event(line, &mut out).context("generated event refused")?;
                if !out.is_empty() {
                    matched += 1;
                    excerpt_bytes += excerpt(line, DEFAULT_EXCERPT_BYTES).len();
                }
                events += 1;
                bytes += line.len() + 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let rate = events as f64 / secs;
        rates.push(rate);
        println!(
            "run {run}: {events} events in {secs:.2} s = {rate:.0} events/s ({:.0} MB/s), {matched} matched events ({excerpt_bytes} excerpt bytes)",
            bytes as f64 / secs / 1e6
        );
    }
    rates.sort_by(f64::total_cmp);
    let (rss, hwm) = rss_kib()?;
    println!(
        "median: {:.0} events/s on one thread; process VmRSS {} MiB, VmHWM {} MiB (the corpus in memory is {} MiB of that)",
        rates[rates.len() / 2],
        rss / 1024,
        hwm / 1024,
        corpus.len() / (1 << 20)
    );
    Ok(())
}
