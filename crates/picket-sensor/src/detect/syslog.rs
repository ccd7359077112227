//! `--syslog-listen udp://HOST:PORT` or `tcp://HOST:PORT`: a syslog receiver on the host.
//!
//! A message is RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`) or RFC 3164
//! (`<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`); it must start with a valid `<PRI>` (0–191), or it
//! is counted as malformed and skipped. The whole message is matched as raw text
//! (`picket_ti::Matcher::match_text`: its tokens against addresses, domains and hashes, the
//! text against patterns). UDP: one message per datagram. TCP (RFC 6587): octet counting
//! (`LEN SP MSG`) or newline framing, decided per frame by its first byte; frames over
//! `MAX_MESSAGE_BYTES` are skipped as malformed. At most `MAX_TCP_CONNECTIONS` at once.

use std::borrow::Cow;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Shared, SourceStats, make_alerts};

/// Longest message accepted (UDP datagram or TCP frame).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most TCP connections served at once; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// How often blocking reads wake up to check the stop flag.
const WAKE: Duration = Duration::from_millis(200);

/// A `--syslog-listen` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// `udp://HOST:PORT`.
    Udp(SocketAddr),
    /// `tcp://HOST:PORT`.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Udp(a) => write!(f, "udp://{a}"),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        let (udp, rest) = if let Some(r) = s.strip_prefix("udp://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (false, r)
        } else {
            return Err(format!("{s:?}: expected udp://HOST:PORT or tcp://HOST:PORT"));
        };
        let addr = rest
            .to_socket_addrs()
            .map_err(|e| format!("{s:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{s:?}: the host has no address"))?;
        Ok(if udp { Listen::Udp(addr) } else { Listen::Tcp(addr) })
    }
}

/// The text of a syslog message (`raw` without its line end), if it starts with a valid
/// `<PRI>`. Bytes that are not UTF-8 are replaced.
pub fn parse(raw: &[u8]) -> Result<Cow<'_, str>, &'static str> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    let Some(rest) = raw.strip_prefix(b"<") else { return Err("no <PRI> at its start") };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 3 || rest.get(digits) != Some(&b'>') {
        return Err("no <PRI> at its start");
    }
    let pri: u32 = rest[..digits].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    if pri > 191 {
        return Err("PRI above 191");
    }
    if rest.len() == digits + 1 {
        return Err("empty message");
    }
    Ok(String::from_utf8_lossy(raw))
}

/// A frame cut from a TCP stream: a message, or why bytes were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One message's bytes.
    Message(Vec<u8>),
    /// Skipped bytes (a frame too long, or a bad octet count).
    Malformed(&'static str),
}

/// Cuts a TCP byte stream into syslog frames (RFC 6587): octet counting when a frame starts
/// with a digit, newline framing otherwise.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    skip_octets: usize,
    skip_line: bool,
}

impl Framer {
    /// Feeds `data`; returns the frames it completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            if self.skip_octets > 0 {
                let n = self.skip_octets.min(self.buf.len() - pos);
                self.skip_octets -= n;
                pos += n;
                if self.skip_octets > 0 {
                    break;
                }
            }
            if self.skip_line {
                match self.buf[pos..].iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        pos += i + 1;
                        self.skip_line = false;
                    }
                    None => {
                        pos = self.buf.len();
                        break;
                    }
                }
            }
            let rest = &self.buf[pos..];
            let Some(&first) = rest.first() else { break };
            if matches!(first, b'\n' | b'\r' | b'\0' | b' ') {
                pos += 1;
                continue;
            }
            if first.is_ascii_digit() {
                let Some(sp) = rest.iter().take(12).position(|b| *b == b' ') else {
                    if rest.len() >= 12 || !rest.iter().all(u8::is_ascii_digit) {
                        out.push(Frame::Malformed("a frame starting with digits but no octet count"));
                        self.skip_line = true;
                        continue;
                    }
                    break;
                };
                let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else {
                    out.push(Frame::Malformed("a bad octet count"));
                    self.skip_line = true;
                    continue;
                };
                if len > MAX_MESSAGE_BYTES {
                    out.push(Frame::Malformed("a frame longer than 64 KiB"));
                    pos += sp + 1;
                    self.skip_octets = len;
                    continue;
                }
                if rest.len() < sp + 1 + len {
                    break;
                }
                out.push(Frame::Message(rest[sp + 1..sp + 1 + len].to_vec()));
                pos += sp + 1 + len;
            } else {
                match rest.iter().position(|b| *b == b'\n') {
                    Some(i) if i <= MAX_MESSAGE_BYTES => {
                        out.push(Frame::Message(rest[..i].to_vec()));
                        pos += i + 1;
                    }
                    Some(i) => {
                        out.push(Frame::Malformed("a frame longer than 64 KiB"));
                        pos += i + 1;
                    }
                    None if rest.len() > MAX_MESSAGE_BYTES => {
                        out.push(Frame::Malformed("a frame longer than 64 KiB"));
                        pos = self.buf.len();
                        self.skip_line = true;
                        break;
                    }
                    None => break,
                }
            }
        }
        self.buf.drain(..pos);
        out
    }

    /// The stream ended: an unterminated newline-framed message still counts.
    pub fn finish(&mut self) -> Option<Frame> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.is_empty() && !self.skip_line && self.skip_octets == 0 && rest[0] == b'<')
            .then_some(Frame::Message(rest))
    }
}

/// Matches one message and stores its alerts.
fn handle(raw: &[u8], source: &str, shared: &Shared, stats: &SourceStats) {
    stats.events.fetch_add(1, Ordering::Relaxed);
    let text = match parse(raw) {
        Ok(t) => t,
        Err(why) => return stats.malformed(source, &why),
    };
    let ti = shared.ti.current();
    let Some(matcher) = &ti.matcher else { return };
    let mut matches = Vec::new();
    matcher.match_text(&text, &mut matches);
    if matches.is_empty() {
        return;
    }
    let mut alerts = Vec::new();
    make_alerts(&ti, &matches, &text, &shared.sensor_id, &mut alerts);
    drop(matches);
    // A full disk must not kill the listener; retry a few times, then drop (and say so).
    for attempt in 0..3 {
        match shared.store(&alerts, None) {
            Ok(()) => {
                stats.alerts.fetch_add(alerts.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt == 2 => {
                tracing::error!(source, error = %e, alerts = alerts.len(), "cannot store syslog alerts; dropped");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Binds `listen` and starts its threads.
pub fn start(listen: &Listen, shared: Shared) -> Result<Vec<JoinHandle<()>>, String> {
    let name = listen.to_string();
    match *listen {
        Listen::Udp(addr) => {
            let sock = UdpSocket::bind(addr).map_err(|e| format!("--syslog-listen {name}: {e}"))?;
            sock.set_read_timeout(Some(WAKE)).map_err(|e| format!("--syslog-listen {name}: {e}"))?;
            tracing::info!(listen = %name, "syslog listener (UDP) started");
            let t = std::thread::Builder::new()
                .name("picket-syslog-udp".into())
                .spawn(move || udp_loop(&sock, &name, &shared))
                .map_err(|e| e.to_string())?;
            Ok(vec![t])
        }
        Listen::Tcp(addr) => {
            let l = TcpListener::bind(addr).map_err(|e| format!("--syslog-listen {name}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| format!("--syslog-listen {name}: {e}"))?;
            tracing::info!(listen = %name, "syslog listener (TCP) started");
            let t = std::thread::Builder::new()
                .name("picket-syslog-tcp".into())
                .spawn(move || tcp_loop(&l, &name, &shared))
                .map_err(|e| e.to_string())?;
            Ok(vec![t])
        }
    }
}

fn udp_loop(sock: &UdpSocket, source: &str, shared: &Shared) {
    let stats = SourceStats::default();
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    while !shared.stopping() {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n > MAX_MESSAGE_BYTES => stats.malformed(source, &"a datagram longer than 64 KiB"),
            Ok((n, _)) => handle(&buf[..n], source, shared, &stats),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => {
                tracing::warn!(source, error = %e, "syslog receive failed");
                std::thread::sleep(WAKE);
            }
        }
    }
}

fn tcp_loop(l: &TcpListener, source: &str, shared: &Shared) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match l.accept() {
            Ok((stream, peer)) => {
                conns.retain(|c| !c.is_finished());
                if active.load(Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
                    tracing::warn!(source, %peer, "too many syslog connections; closing this one");
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (sh, src, act) = (shared.clone(), source.to_string(), active.clone());
                match std::thread::Builder::new().name("picket-syslog-conn".into()).spawn(move || {
                    tcp_conn(stream, &src, &sh);
                    act.fetch_sub(1, Ordering::Relaxed);
                }) {
                    Ok(t) => conns.push(t),
                    Err(e) => {
                        active.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(source, error = %e, "cannot serve a syslog connection");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                tracing::warn!(source, error = %e, "syslog accept failed");
                std::thread::sleep(WAKE);
            }
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn tcp_conn(mut stream: TcpStream, source: &str, shared: &Shared) {
    let stats = SourceStats::default();
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(WAKE)).is_err() {
        return;
    }
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stopping() {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                for f in framer.push(&buf[..n]) {
                    match f {
                        Frame::Message(m) => handle(&m, source, shared, &stats),
                        Frame::Malformed(why) => stats.malformed(source, &why),
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(Frame::Message(m)) = framer.finish() {
        handle(&m, source, shared, &stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(frames: Vec<Frame>) -> Vec<String> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::Message(m) => String::from_utf8(m).unwrap(),
                Frame::Malformed(why) => format!("MALFORMED {why}"),
            })
            .collect()
    }

    #[test]
    fn octet_counting_and_newline_framing_mix_and_split_anywhere() {
        let a = "<34>1 2026-11-22T10:00:00Z h app - - - one";
        let b = "<13>Nov 22 10:00:00 h tag: two";
        let stream = format!("{} {a}{b}\n{} {a}\r\n", a.len(), a.len());
        // Every split of the stream into two reads gives the same frames.
        for cut in 0..stream.len() {
            let mut f = Framer::default();
            let mut got = messages(f.push(&stream.as_bytes()[..cut]));
            got.extend(messages(f.push(&stream.as_bytes()[cut..])));
            assert_eq!(got, [a, b, a], "cut at {cut}");
            assert_eq!(f.finish(), None);
        }
        let mut f = Framer::default();
        assert!(f.push(b"<13>no line end").is_empty());
        assert_eq!(f.finish(), Some(Frame::Message(b"<13>no line end".to_vec())));
    }

    #[test]
    fn oversized_and_garbled_frames_are_skipped_and_framing_recovers() {
        let mut f = Framer::default();
        let big = "x".repeat(MAX_MESSAGE_BYTES + 10);
        let stream = format!("{} {big}5 <1>ok", big.len());
        let got = messages(f.push(stream.as_bytes()));
        assert_eq!(got, ["MALFORMED a frame longer than 64 KiB", "<1>ok"]);
        let got = messages(f.push(b"12x34 garbage\n<2>after\n"));
        assert_eq!(got, ["MALFORMED a bad octet count", "<2>after"]);
        let got = messages(f.push(b"1234567890123 <1>no space in the count\n<3>then\n"));
        assert_eq!(got, ["MALFORMED a frame starting with digits but no octet count", "<3>then"]);
        let mut f = Framer::default();
        let long_line = format!("<3>{}", "y".repeat(MAX_MESSAGE_BYTES + 1));
        let mut got = messages(f.push(long_line.as_bytes()));
        got.extend(messages(f.push(b"still the long line\n<4>next\n")));
        assert_eq!(got, ["MALFORMED a frame longer than 64 KiB", "<4>next"]);
    }

    #[test]
    fn messages_need_a_valid_pri() {
        assert_eq!(
            parse(b"<34>1 2026-11-22T10:00:00Z h a - - - m\n").unwrap(),
            "<34>1 2026-11-22T10:00:00Z h a - - - m"
        );
        assert_eq!(parse(b"<191>Nov 22 10:00:00 h t: m\r\n").unwrap(), "<191>Nov 22 10:00:00 h t: m");
        for bad in [&b"no pri"[..], b"<192>x", b"<>x", b"<1234>x", b"<12x", b"<5>", b""] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"<5>caf\xff").unwrap(), "<5>caf\u{fffd}");
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!("udp://127.0.0.1:514".parse::<Listen>().unwrap().to_string(), "udp://127.0.0.1:514");
        assert_eq!("tcp://[::1]:6514".parse::<Listen>().unwrap().to_string(), "tcp://[::1]:6514");
        assert!("http://127.0.0.1:1".parse::<Listen>().is_err());
        assert!("udp://127.0.0.1".parse::<Listen>().is_err());
    }
}
