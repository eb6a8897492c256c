//! Plain HTTP on loopback, by ureq: the instances' own ports, Prometheus's API and nginx's
//! loopback port for the load. The check uses the `curl` CLI where it needs TLS or a chosen
//! source address.
//!
//! ureq never sends a request again by itself (not even one whose kept-alive connection
//! turned out closed), so a request the load loses shows as lost instead of being retried
//! out of sight.

use std::net::SocketAddr;
use std::time::Duration;

use ureq::Agent;

/// Longest a call may take: every peer is on loopback.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Requests to one server over at most one kept-alive connection, one after another.
pub struct Client {
    agent: Agent,
    base: String,
}

/// Why a call got no response: the connection could not be opened, or it failed after.
#[derive(Debug)]
pub enum CallError {
    Connect(String),
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(CALL_TIMEOUT))
            .max_idle_connections_per_host(1)
            .build()
            .into();
        Self {
            agent,
            base: format!("http://{addr}"),
        }
    }

    /// Sends one request and reads its whole response.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, CallError> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.to_vec())
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let mut response = self.agent.run(request).map_err(|e| match e {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                CallError::Connect(e.to_string())
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                CallError::Connect(io.to_string())
            }
            other => CallError::Transport(other.to_string()),
        })?;
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| CallError::Transport(e.to_string()))?;
        Ok(Response {
            status: response.status().as_u16(),
            headers,
            body,
        })
    }
}

/// One GET on a client of its own.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Response, CallError> {
    Client::new(addr).send("GET", path, headers, b"")
}

/// `text` percent-encoded for a query value or a form field.
pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode(r#"count(up{job="myapi"} == 1)"#),
            "count%28up%7Bjob%3D%22myapi%22%7D+%3D%3D+1%29"
        );
    }
}
