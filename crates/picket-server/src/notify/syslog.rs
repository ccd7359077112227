//! The syslog target of `picket serve --syslog udp://HOST:PORT | tcp://HOST:PORT`: RFC 5424
//! messages whose MSG is a CEF line (`cef`), one datagram each over UDP, octet-counted
//! (RFC 6587 `LEN SP MSG`) over one kept-open TCP connection that is re-opened after an error.
//!
//! UDP cannot tell whether anything received the message: a datagram handed to the kernel
//! counts as delivered (the attempt is still recorded). TCP counts a message delivered once
//! it is written; a write error drops the connection, and the delivery is retried.

use std::time::Duration;

use picket_domain::Timestamp;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;

/// Syslog facility of every message: local0 (16), which SIEM collectors commonly route.
pub const FACILITY: u8 = 16;
/// The private enterprise number in our structured data (32473 is reserved for examples and
/// documentation by RFC 5612; replace with Picket's own if it ever gets one).
pub const SD_ID: &str = "picket@32473";
/// How long connecting or writing to a TCP collector may take.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Transport of a syslog target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per message.
    Udp,
    /// Octet-counted frames on a stream.
    Tcp,
}

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// UDP or TCP.
    pub transport: Transport,
    /// `HOST:PORT` (resolved at each connect).
    pub address: String,
}

impl SyslogTarget {
    /// Parses `udp://HOST:PORT` or `tcp://HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(s: &str) -> Result<SyslogTarget, String> {
        let s = s.trim();
        let (transport, rest) = if let Some(r) = s.strip_prefix("udp://") {
            (Transport::Udp, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (Transport::Tcp, r)
        } else {
            return Err(format!("syslog target {s:?}: expected udp://HOST:PORT or tcp://HOST:PORT"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) =
            rest.rsplit_once(':').ok_or_else(|| format!("syslog target {s:?}: missing :PORT after the host"))?;
        let port: u16 = port.parse().map_err(|_| format!("syslog target {s:?}: port {port:?} is not a number"))?;
        if port == 0 {
            return Err(format!("syslog target {s:?}: port 0 is not a port to send to"));
        }
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if bare.is_empty()
            || bare.contains(['/', '@', ' ', '?', '#'])
            || (bare.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err())
        {
            return Err(format!("syslog target {s:?}: {host:?} is not a host name or address"));
        }
        Ok(SyslogTarget { transport, address: format!("{host}:{port}") })
    }
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        };
        write!(f, "{scheme}://{}", self.address)
    }
}

/// Syslog severity (RFC 5424) of a health-issue severity: high = error (3), medium =
/// warning (4), anything else = notice (5).
pub fn syslog_severity(severity: Option<&str>) -> u8 {
    match severity {
        Some("high") => 3,
        Some("medium") => 4,
        _ => 5,
    }
}

/// Keeps printable US-ASCII (RFC 5424 header fields), up to `max` characters; `-` if empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if v.is_empty() { "-".to_string() } else { v }
}

/// Escapes a structured-data parameter value (`"`, `\` and `]`).
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME picket PROCID MSGID [SD] MSG`, with the
/// event as MSGID and the delivery id and event in structured data.
pub fn format_rfc5424(
    at: Timestamp,
    hostname: &str,
    severity: u8,
    event: &str,
    delivery_id: &str,
    msg: &str,
) -> String {
    let pri = u16::from(FACILITY) * 8 + u16::from(severity.min(7));
    format!(
        "<{pri}>1 {} {} picket {} {} [{SD_ID} delivery=\"{}\" event=\"{}\"] {msg}",
        picket_proto::time::format_ts(at),
        header_field(hostname, 255),
        std::process::id(),
        header_field(event, 32),
        sd_escape(delivery_id),
        sd_escape(event),
    )
}

/// RFC 6587 octet counting: `LEN SP MSG`.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut frame = format!("{} ", msg.len()).into_bytes();
    frame.extend_from_slice(msg.as_bytes());
    frame
}

/// This host's name for the HOSTNAME field (`-` when unknown).
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| header_field(h.trim(), 255))
        .unwrap_or_else(|| "-".to_string())
}

/// Sends messages to one syslog target.
#[derive(Debug)]
pub struct SyslogSender {
    target: SyslogTarget,
    tcp: Mutex<Option<TcpStream>>,
}

impl SyslogSender {
    /// A sender to `target` (nothing is opened until the first message).
    pub fn new(target: SyslogTarget) -> SyslogSender {
        SyslogSender { target, tcp: Mutex::new(None) }
    }

    /// The target.
    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Sends one message; `Err` says why it did not go out.
    pub async fn send(&self, msg: &str) -> Result<(), String> {
        match self.target.transport {
            Transport::Udp => self.send_udp(msg).await,
            Transport::Tcp => self.send_tcp(msg).await,
        }
    }

    async fn send_udp(&self, msg: &str) -> Result<(), String> {
        let addr = tokio::net::lookup_host(&self.target.address)
            .await
            .map_err(|e| format!("resolving {}: {e}", self.target.address))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.target.address))?;
        let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(local).await.map_err(|e| format!("opening a UDP socket: {e}"))?;
        socket.send_to(msg.as_bytes(), addr).await.map_err(|e| format!("sending to {}: {e}", self.target))?;
        Ok(())
    }

    async fn send_tcp(&self, msg: &str) -> Result<(), String> {
        let frame = octet_counted(msg);
        let mut conn = self.tcp.lock().await;
        if let Some(stream) = conn.as_mut() {
            // A collector never talks back: a read that sees EOF or an error means it closed
            // the connection (a write would still "succeed" into the void once), so reopen.
            let mut probe = [0u8; 64];
            let open = matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if open && write_frame(stream, &frame).await.is_ok() {
                return Ok(());
            }
            *conn = None;
        }
        let mut stream = tokio::time::timeout(TCP_TIMEOUT, TcpStream::connect(&self.target.address))
            .await
            .map_err(|_| format!("connecting to {}: timed out", self.target))?
            .map_err(|e| format!("connecting to {}: {e}", self.target))?;
        write_frame(&mut stream, &frame).await.map_err(|e| format!("writing to {}: {e}", self.target))?;
        *conn = Some(stream);
        Ok(())
    }
}

/// Writes one frame, within the TCP timeout.
async fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(TCP_TIMEOUT, async {
        stream.write_all(frame).await?;
        stream.flush().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = SyslogTarget::parse("udp://127.0.0.1:514").unwrap();
        assert_eq!((t.transport, t.address.as_str()), (Transport::Udp, "127.0.0.1:514"));
        let t = SyslogTarget::parse("tcp://siem.example.com:6514/").unwrap();
        assert_eq!((t.transport, t.address.as_str()), (Transport::Tcp, "siem.example.com:6514"));
        assert_eq!(SyslogTarget::parse("tcp://[::1]:514").unwrap().to_string(), "tcp://[::1]:514");
        for bad in [
            "syslog.example.com:514",
            "http://x:514",
            "udp://x",
            "udp://x:port",
            "udp://:514",
            "tcp://x:0",
            "udp://a/b:514",
            "udp://user@x:514",
        ] {
            assert!(SyslogTarget::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn rfc5424_frame() {
        let m = format_rfc5424(Timestamp(1_795_341_600_123), "dc host", 3, "health_issue.opened", "d\"1]", "CEF:0|x");
        let pid = std::process::id();
        assert_eq!(
            m,
            format!(
                "<131>1 2026-11-22T10:00:00.123Z dchost picket {pid} health_issue.opened \
                 [picket@32473 delivery=\"d\\\"1\\]\" event=\"health_issue.opened\"] CEF:0|x"
            )
        );
        assert_eq!(octet_counted("abc é"), b"6 abc \xc3\xa9".to_vec(), "octets, not characters");
        assert_eq!(syslog_severity(Some("high")), 3);
        assert_eq!(syslog_severity(None), 5);
    }
}
