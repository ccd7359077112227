//! Admin commands over the REST API: finding the server and token, and turning the client's
//! refusals into messages that say what to do. One module per resource group.

pub mod admin;
pub mod health;
pub mod release;
pub mod sensors;
pub mod simulate;
pub mod ti;
pub mod users;
pub mod webhooks;

use std::io::{BufWriter, Stdout};
use std::path::{Path, PathBuf};

use picket_client::{Client, ClientError};

use crate::cli::ApiArgs;
use crate::exit::{CliError, Hinted};

/// Where the CLI looks for a token when none is given: the default data dir of `picket serve`.
const DEFAULT_TOKEN_FILE: &str = "picket-data/bootstrap-token";

/// Where the token came from, to explain a refusal.
#[derive(Debug, Clone)]
enum TokenSource {
    /// `--token` or `PICKET_TOKEN`.
    Given,
    /// The bootstrap-token file of a local `picket serve`.
    File(PathBuf),
}

/// A connected client and what to say when the server refuses its token.
#[derive(Debug)]
pub struct Api {
    /// The client.
    pub client: Client,
    source: TokenSource,
}

impl Api {
    /// Adds, to an authentication refusal, where the token came from.
    pub fn explain(&self, error: ClientError) -> anyhow::Error {
        match (&self.source, error.is_auth()) {
            (TokenSource::File(path), true) => anyhow::Error::new(Hinted {
                error,
                hint: format!(
                    "the token was read from {}; pass --token or set PICKET_TOKEN to use another",
                    path.display()
                ),
            }),
            _ => anyhow::Error::new(error),
        }
    }
}

/// Reads the token from a bootstrap-token file, if there is one.
fn token_from_file(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            Ok((!token.is_empty()).then_some(token))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading the token from {}", path.display()))),
    }
}

/// A client for `args`: the token from `--token`/`PICKET_TOKEN`, else from
/// `./picket-data/bootstrap-token`.
pub fn connect(args: &ApiArgs) -> anyhow::Result<Api> {
    let (token, source) = match args.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => (t.to_string(), TokenSource::Given),
        None => {
            let path = PathBuf::from(".").join(DEFAULT_TOKEN_FILE);
            match token_from_file(&path)? {
                Some(t) => (t, TokenSource::File(path)),
                None => {
                    return Err(CliError::Auth(format!(
                        "no API token: pass --token or set PICKET_TOKEN (no {} here either)",
                        path.display()
                    ))
                    .into());
                }
            }
        }
    };
    let client = Client::new(&args.server, token)?;
    Ok(Api { client, source })
}

/// Buffered stdout for command output.
pub fn stdout() -> BufWriter<Stdout> {
    BufWriter::with_capacity(64 * 1024, std::io::stdout())
}
