//! A node's address as an operator writes it: `HOST:PORT`, where the host is an IP
//! address or a DNS name (`pi2.local:7101`, `gw-3.plant.example:7101`, `[fe80::1]:7101`).
//!
//! A name is resolved when it is used, not once at start-up: an edge device whose DHCP
//! lease moves it to a new address is found again at its next connection attempt.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A name that does not resolve in this long counts as unresolvable for this attempt (a
/// dead DNS server must not hold up a reconnect loop or a client's retries).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 1035: a whole domain name is at most 253 characters as text.
const HOST_BYTES_MAX: usize = 253;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum NodeAddr {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl NodeAddr {
    /// The IP address, if it is written as one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            NodeAddr::Ip(addr) => Some(*addr),
            NodeAddr::Name { .. } => None,
        }
    }

    /// The socket address to use now from a socket bound to `local`: the IP as written,
    /// or the first address the name resolves to in `local`'s family (an IPv4 socket
    /// cannot send to an IPv6 address, and `localhost` often resolves to `::1` first).
    pub async fn resolve(&self, local: SocketAddr) -> Result<SocketAddr, String> {
        match self {
            NodeAddr::Ip(addr) => Ok(*addr),
            NodeAddr::Name { host, port } => {
                let lookup = tokio::net::lookup_host((host.as_str(), *port));
                let addrs: Vec<SocketAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Err(_) => return Err(format!("cannot resolve {host}: no answer in {RESOLVE_TIMEOUT:?}")),
                    Ok(Err(error)) => return Err(format!("cannot resolve {host}: {error}")),
                    Ok(Ok(addrs)) => addrs.collect(),
                };
                let family = if local.is_ipv4() { "IPv4" } else { "IPv6" };
                addrs.iter().find(|addr| addr.is_ipv4() == local.is_ipv4()).copied().ok_or_else(|| {
                    let found: Vec<String> = addrs.iter().map(|addr| addr.ip().to_string()).collect();
                    format!("cannot resolve {host} to an {family} address (found: {})", found.join(", "))
                })
            }
        }
    }
}

impl From<SocketAddr> for NodeAddr {
    fn from(addr: SocketAddr) -> NodeAddr {
        NodeAddr::Ip(addr)
    }
}

impl FromStr for NodeAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<NodeAddr, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(NodeAddr::Ip(addr));
        }
        let example = "like 192.168.1.12:7101 or pi2.local:7101";
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("{text:?}: expected HOST:PORT, {example}"))?;
        let port: u16 = port.parse().map_err(|_| format!("{text:?}: the port {port:?} is not a number, {example}"))?;
        if port == 0 {
            return Err(format!("{text:?}: port 0 cannot be reached, {example}"));
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let name = host.strip_suffix('.').unwrap_or(host);
        if host.len() > HOST_BYTES_MAX || !name.split('.').all(label_ok) {
            return Err(format!("{text:?}: {host:?} is neither an IP address nor a host name, {example}"));
        }
        Ok(NodeAddr::Name { host: host.to_string(), port })
    }
}

impl TryFrom<String> for NodeAddr {
    type Error = String;

    fn try_from(text: String) -> Result<NodeAddr, String> {
        text.parse()
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeAddr::Ip(addr) => addr.fmt(f),
            NodeAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Resolves every address of a cluster list for a socket bound to `local` (a command
/// starting): the first that fails is named.
pub async fn resolve_all(addrs: &[NodeAddr], local: SocketAddr) -> Result<Vec<SocketAddr>, String> {
    let mut resolved = Vec::with_capacity(addrs.len());
    for addr in addrs {
        resolved.push(addr.resolve(local).await?);
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: IPs, IPv6 literals and host names parse; mistakes are refused with an example.
    #[test]
    fn addresses_parse_and_mistakes_are_named() {
        assert_eq!("127.0.0.1:7101".parse::<NodeAddr>().unwrap(), NodeAddr::Ip("127.0.0.1:7101".parse().unwrap()));
        assert_eq!("[::1]:7101".parse::<NodeAddr>().unwrap(), NodeAddr::Ip("[::1]:7101".parse().unwrap()));
        let name = "pi2.local:7101".parse::<NodeAddr>().unwrap();
        assert_eq!(name, NodeAddr::Name { host: "pi2.local".into(), port: 7101 });
        assert_eq!(name.to_string(), "pi2.local:7101");
        assert_eq!(name.ip(), None);
        for bad in ["pi2.local", "pi2:port", "pi2:0", ":7101", "pi 2:7101", "-pi2:7101", "a..b:7101", "pi2:70000"] {
            let error = bad.parse::<NodeAddr>().unwrap_err();
            assert!(error.contains(bad) && error.contains("pi2.local:7101"), "{bad}: {error}");
        }
    }

    /// Goal: a name resolves when used (localhost always does); an unknown one says so.
    #[tokio::test]
    async fn names_resolve_when_used() {
        let ipv4: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let local = "localhost:7101".parse::<NodeAddr>().unwrap();
        let addr = local.resolve(ipv4).await.unwrap();
        assert_eq!(addr, "127.0.0.1:7101".parse().unwrap());
        // An IP needs no lookup; a literal is used whatever the socket.
        let written: SocketAddr = "[::1]:7101".parse().unwrap();
        assert_eq!(NodeAddr::Ip(written).resolve(ipv4).await.unwrap(), written);
        // RFC 6761 reserves .invalid: it never resolves.
        let unknown = "nowhere.invalid:7101".parse::<NodeAddr>().unwrap();
        let error = unknown.resolve(ipv4).await.unwrap_err();
        // Whether DNS says "no such name" or does not answer within the bound.
        assert!(error.contains("cannot resolve nowhere.invalid"), "{error}");
        let error = resolve_all(&[local.clone(), unknown], ipv4).await.unwrap_err();
        assert!(error.contains("nowhere.invalid"), "{error}");
        assert_eq!(resolve_all(&[local], ipv4).await.unwrap()[0].port(), 7101);
    }
}
