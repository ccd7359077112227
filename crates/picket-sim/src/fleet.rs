//! The simulated sensors: onboarded through the REST API (`POST /api/v1/sensors`, then the
//! activation file), each activated over the real sensor API with its own new certificate.
//! A fleet can be saved to a file and loaded again, so repeated runs against the same
//! server skip onboarding (the file holds private keys: it is written with mode 0600).

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;
use picket_client::Client;
use picket_domain::{Mode, SensorType};
use picket_proto::api::OnboardRequest;
use picket_proto::sensor::{ActivateRequest, ActivateResponse};
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::conn::Conn;
use crate::identity::SimIdentity;
use crate::tls::{SessionSlot, Target};

/// One simulated sensor.
#[derive(Debug)]
pub struct SimSensor {
    /// Its id in the control plane.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its certificate and key.
    pub identity: SimIdentity,
    /// Its TLS session memory.
    pub sessions: Arc<SessionSlot>,
    /// The configuration version it applied (kept across runs, as a sensor keeps its state).
    pub applied: std::sync::atomic::AtomicI64,
}

impl SimSensor {
    fn new(id: String, name: String, identity: SimIdentity) -> SimSensor {
        SimSensor { id, name, identity, sessions: Arc::new(SessionSlot::default()), applied: Default::default() }
    }
}

/// A simulated fleet and the listener it talks to.
#[derive(Debug)]
pub struct Fleet {
    /// The sensor listener.
    pub target: Arc<Target>,
    /// The sensors.
    pub sensors: Vec<Arc<SimSensor>>,
}

/// How to onboard a fleet.
#[derive(Debug, Clone)]
pub struct OnboardOptions {
    /// REST API base URL.
    pub server: String,
    /// API token (operator or admin).
    pub token: String,
    /// How many sensors.
    pub sensors: usize,
    /// Name prefix (names are PREFIX000001, ...).
    pub prefix: String,
    /// Sensors onboarded and activated at once.
    pub concurrency: usize,
    /// The sensor listener URL, if not the first of the activation file's `control_plane_urls`.
    pub sensor_server: Option<String>,
    /// Timeout of one sensor API call.
    pub timeout: Duration,
}

const FILE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileHeader {
    format: u32,
    sensor_url: String,
    ca_cert_pem: String,
}

#[derive(Serialize, Deserialize)]
struct FileSensor {
    id: String,
    name: String,
    cert: String,
    key: String,
    /// The configuration version it applied (a sensor keeps it in its state dir); files of
    /// older simulators lack it.
    #[serde(default)]
    applied: i64,
}

fn api(what: impl Into<String>) -> impl FnOnce(picket_client::ClientError) -> SimError {
    let what = what.into();
    move |source| SimError::Api { what, source }
}

/// Onboards, downloads the activation file of, and activates sensor number `n`; the target
/// is made from the first activation file when not known yet.
async fn onboard_one(
    client: &Client,
    opts: &OnboardOptions,
    n: usize,
    target: Option<&Arc<Target>>,
) -> Result<(SimSensor, Arc<Target>), SimError> {
    let name = format!("{}{n:06}", opts.prefix);
    let req = OnboardRequest {
        name: name.clone(),
        sensor_type: SensorType::DomainController,
        domain: "sim.example.com".to_string(),
        subscription: "default".to_string(),
        site: String::new(),
        zone: "default".to_string(),
        tags: vec!["simulated".to_string()],
        mode: Mode::CloudConnected,
        auto_ti_updates: true,
        description: "picket simulate".to_string(),
        delayed_update: false,
        config: Default::default(),
    };
    let view = client.onboard_sensor(&req).await.map_err(api(format!("onboarding {name}")))?;
    let file = client.activation_file(&view.id).await.map_err(api(format!("the activation file of {name}")))?;
    let target = match target {
        Some(t) => t.clone(),
        None => {
            let url = match &opts.sensor_server {
                Some(u) => u.clone(),
                None => file.control_plane_urls.first().cloned().ok_or_else(|| {
                    SimError::Setup("the activation file names no control_plane_urls; pass --sensor-server".into())
                })?,
            };
            Arc::new(Target::new(&url, &file.ca_cert_pem).await?)
        }
    };
    let identity = SimIdentity::generate(&name)?;
    let sensor = SimSensor::new(view.id.clone(), name, identity);
    activate(&target, &sensor, &file.activation_token, opts.timeout).await?;
    Ok((sensor, target))
}

/// `POST /sensor/v1/activate` with the sensor's own certificate.
pub async fn activate(target: &Target, sensor: &SimSensor, token: &str, timeout: Duration) -> Result<(), SimError> {
    let mut conn = Conn::open(target, &sensor.identity, sensor.sessions.clone()).await?;
    let body =
        serde_json::to_vec(&ActivateRequest { sensor_id: sensor.id.clone(), activation_token: token.to_string() })
            .map_err(|e| SimError::Setup(e.to_string()))?;
    let answer = conn.call(Method::POST, "/sensor/v1/activate", Some(body.into()), timeout).await?;
    let answer: ActivateResponse =
        serde_json::from_slice(&answer).map_err(|e| SimError::Http(format!("activation answer: {e}")))?;
    if answer.cert_fingerprint != sensor.identity.fingerprint() {
        return Err(SimError::Http("the activation answer pins another certificate".into()));
    }
    Ok(())
}

impl Fleet {
    /// Onboards and activates `opts.sensors` sensors, `opts.concurrency` at a time; calls
    /// `progress` with the number done after each. Fails on the first refusal.
    pub async fn onboard(opts: &OnboardOptions, progress: Arc<dyn Fn(usize) + Send + Sync>) -> Result<Fleet, SimError> {
        if opts.sensors == 0 {
            return Err(SimError::Setup("--sensors must be at least 1".into()));
        }
        let client = Client::new(&opts.server, opts.token.clone()).map_err(api("the server URL"))?;
        client.healthz().await.map_err(api("cannot reach the Picket server"))?;
        let (first, target) = match onboard_one(&client, opts, 1, None).await {
            Err(SimError::Api { source, .. }) if source.is_auth() => {
                return Err(SimError::Api {
                    what: format!(
                        "{} refused the API token (onboarding needs an operator or admin token: pass --token or set PICKET_TOKEN)",
                        opts.server
                    ),
                    source,
                });
            }
            r => r?,
        };
        progress(1);
        let next = Arc::new(AtomicUsize::new(2));
        let done = Arc::new(AtomicUsize::new(1));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..opts.concurrency.clamp(1, 1024).min(opts.sensors) {
            let (client, opts, target) = (client.clone(), opts.clone(), target.clone());
            let (next, done, progress) = (next.clone(), done.clone(), progress.clone());
            workers.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > opts.sensors {
                        return Ok::<_, SimError>(mine);
                    }
                    let (s, _) = onboard_one(&client, &opts, n, Some(&target)).await?;
                    mine.push((n, Arc::new(s)));
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                }
            });
        }
        let mut all = vec![(1, Arc::new(first))];
        while let Some(r) = workers.join_next().await {
            match r {
                Ok(Ok(mine)) => all.extend(mine),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(SimError::Setup(format!("an onboarding worker failed: {e}"))),
            }
        }
        all.sort_by_key(|(n, _)| *n);
        Ok(Fleet { target, sensors: all.into_iter().map(|(_, s)| s).collect() })
    }

    /// `n` sensors with new certificates that no control plane knows (for servers that
    /// accept any certificate, such as the benchmark's bare server).
    pub fn generated(target: Arc<Target>, n: usize, prefix: &str) -> Result<Fleet, SimError> {
        let sensors = (1..=n)
            .map(|i| {
                let name = format!("{prefix}{i:06}");
                Ok(Arc::new(SimSensor::new(format!("sim-{i}"), name.clone(), SimIdentity::generate(&name)?)))
            })
            .collect::<Result<_, SimError>>()?;
        Ok(Fleet { target, sensors })
    }

    /// Writes the fleet (ids, names, certificates and keys, applied configuration versions)
    /// to `path`, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), SimError> {
        let io = |source| SimError::Io { path: path.to_path_buf(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut w = BufWriter::new(opts.open(path).map_err(io)?);
        let header = FileHeader {
            format: FILE_FORMAT,
            sensor_url: self.target.url.clone(),
            ca_cert_pem: self.target.ca_cert_pem.clone(),
        };
        write_line(&mut w, &header).map_err(io)?;
        for s in &self.sensors {
            let rec = FileSensor {
                id: s.id.clone(),
                name: s.name.clone(),
                cert: hex::encode(&s.identity.cert_der),
                key: hex::encode(&s.identity.key_der),
                applied: s.applied.load(Ordering::Relaxed),
            };
            write_line(&mut w, &rec).map_err(io)?;
        }
        w.flush().map_err(io)
    }

    /// Reads a fleet written by `save`; `sensor_server` overrides the listener URL in it.
    pub async fn load(path: &Path, sensor_server: Option<&str>) -> Result<Fleet, SimError> {
        let io = |source| SimError::Io { path: path.to_path_buf(), source };
        let bad = |why: String| SimError::Setup(format!("{}: {why}", path.display()));
        let f = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut lines = f.lines();
        let header: FileHeader = match lines.next() {
            Some(l) => serde_json::from_str(&l.map_err(io)?).map_err(|e| bad(format!("header: {e}")))?,
            None => return Err(bad("empty".into())),
        };
        if header.format != FILE_FORMAT {
            return Err(bad(format!("format {} (this simulator reads {FILE_FORMAT})", header.format)));
        }
        let target = Arc::new(Target::new(sensor_server.unwrap_or(&header.sensor_url), &header.ca_cert_pem).await?);
        let mut sensors = Vec::new();
        for (i, l) in lines.enumerate() {
            let r: FileSensor =
                serde_json::from_str(&l.map_err(io)?).map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
            let hexd = |s: &str| hex::decode(s).map_err(|e| bad(format!("line {}: {e}", i + 2)));
            let identity = SimIdentity { cert_der: hexd(&r.cert)?, key_der: hexd(&r.key)? };
            let sensor = SimSensor::new(r.id, r.name, identity);
            sensor.applied.store(r.applied, Ordering::Relaxed);
            sensors.push(Arc::new(sensor));
        }
        Ok(Fleet { target, sensors })
    }
}

/// Writes `v` as one JSON line.
fn write_line(w: &mut impl Write, v: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, v)?;
    w.write_all(b"\n")
}
