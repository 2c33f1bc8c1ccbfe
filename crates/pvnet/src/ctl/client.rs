//! The client side of the control socket: one request, one response.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::proto::{Request, Response};

/// How long the client waits for the switch to answer (opening a port may take a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no result.
#[derive(Debug)]
pub enum CtlError {
    /// Nothing answers on the socket: no switch is running there.
    NotRunning {
        /// The socket tried.
        path: PathBuf,
        /// What connecting said.
        source: io::Error,
    },
    /// The switch answered with an error.
    Refused(String),
    /// The connection broke or the answer was not the protocol.
    Protocol {
        /// The socket tried.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::NotRunning { path, source } => write!(
                f,
                "no switch is running on {} ({source}); start one with `pvnet switch` \
                 or give its socket with --ctl PATH",
                path.display()
            ),
            CtlError::Refused(why) => f.write_str(why),
            CtlError::Protocol { path, why } => {
                write!(f, "control socket {}: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for CtlError {}

/// A connection to a running switch's control socket.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connect to the switch listening on `path`.
    pub fn connect(path: &Path) -> Result<Client, CtlError> {
        let stream = UnixStream::connect(path).map_err(|source| CtlError::NotRunning {
            path: path.to_owned(),
            source,
        })?;
        let proto = |e: io::Error| CtlError::Protocol {
            path: path.to_owned(),
            why: e.to_string(),
        };
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(proto)?;
        stream
            .set_write_timeout(Some(ANSWER_TIMEOUT))
            .map_err(proto)?;
        let writer = stream.try_clone().map_err(proto)?;
        Ok(Client {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn protocol(&self, why: impl Into<String>) -> CtlError {
        CtlError::Protocol {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    /// Send `req` and return the raw result (`null` when there is none).
    pub fn call(&mut self, req: &Request) -> Result<serde_json::Value, CtlError> {
        let mut line = serde_json::to_string(req).map_err(|e| self.protocol(e.to_string()))?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| self.protocol(format!("sending the request: {e}")))?;
        let mut answer = String::new();
        match self.reader.read_line(&mut answer) {
            Ok(0) => return Err(self.protocol("the switch closed the connection")),
            Ok(_) => {}
            Err(e) => return Err(self.protocol(format!("reading the answer: {e}"))),
        }
        let resp: Response = serde_json::from_str(answer.trim_end())
            .map_err(|e| self.protocol(format!("not a response ({e}): {}", answer.trim_end())))?;
        if resp.ok {
            Ok(resp.result.unwrap_or(serde_json::Value::Null))
        } else {
            Err(CtlError::Refused(
                resp.error
                    .unwrap_or_else(|| "refused, without a reason".into()),
            ))
        }
    }

    /// Send `req` and decode its result as `T`.
    pub fn get<T: DeserializeOwned>(&mut self, req: &Request) -> Result<T, CtlError> {
        let v = self.call(req)?;
        self.decode(v)
    }

    /// Decode a result [`Client::call`] returned as `T`.
    pub fn decode<T: DeserializeOwned>(&self, v: serde_json::Value) -> Result<T, CtlError> {
        serde_json::from_value(v).map_err(|e| self.protocol(format!("unexpected result: {e}")))
    }
}

/// Connect, send one request, decode its result.
pub fn request<T: DeserializeOwned>(path: &Path, req: &Request) -> Result<T, CtlError> {
    Client::connect(path)?.get(req)
}
